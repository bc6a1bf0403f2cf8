//! The parts of a relocation attested in parts, pipelined: while one part is checked, the
//! buffers of the next ones are opened and uploaded. The checks go in order, each sent once the
//! one before it is confirmed, since each part must start where the last one ended.

use std::collections::VecDeque;

use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

use super::chain::{Client, OpenRelocation};
use super::flights::{Backoff, Flight, Upload};
use super::program as instructions;
use memzinc::base::{Result, Sha2};

/// How many parts are in flight at once: the one being checked and those uploaded ahead of it.
/// Each holds a buffer's rent until its check closes the buffer.
const PARTS_IN_FLIGHT: usize = 4;

/// `getMultipleAccounts` takes at most this many addresses.
const ACCOUNTS_PER_QUERY: usize = 100;

enum Stage {
    /// Its buffer is being created; the part's bytes wait for it.
    Opening(Flight, Vec<u8>),
    Uploading(Upload),
    Uploaded,
    Checking(Flight),
}

struct Part {
    index: usize,
    buffer: Pubkey,
    stage: Stage,
}

impl Stage {
    fn flights(&mut self) -> Vec<&mut Flight> {
        match self {
            Stage::Opening(f, _) | Stage::Checking(f) => vec![f],
            Stage::Uploading(_) | Stage::Uploaded => Vec::new(),
        }
    }
}

impl Client {
    /// Uploads and checks the parts of `open` from `first` on, in order. Returns the upload
    /// transactions.
    pub(super) fn check_parts(&self, first: usize, open: &OpenRelocation) -> Result<usize> {
        let signer = self.authority();
        let labels: Vec<[u8; 32]> = open
            .layout
            .parts
            .iter()
            .map(|p| p.submission.plan.plan_hash::<Sha2>())
            .collect();
        let keys: Vec<Keypair> = labels
            .iter()
            .map(|label| instructions::buffer_keypair(&self.payer, label))
            .collect();
        // Buffers an interrupted run left behind are closed (their rent returned) first.
        let addresses: Vec<Pubkey> = keys.iter().map(|k| k.pubkey()).collect();
        let leftovers = self
            .owned_among(&addresses)?
            .into_iter()
            .map(|i| instructions::close_buffer(&self.program_id, &signer, &addresses[i], &labels[i]))
            .collect();
        self.send_all(leftovers)?;

        let count = open.layout.parts.len();
        let mut window: VecDeque<Part> = VecDeque::with_capacity(PARTS_IN_FLIGHT);
        let (mut next, mut uploads) = (first, 0);
        let mut pause = Backoff::new();
        while next < count || !window.is_empty() {
            while window.len() < PARTS_IN_FLIGHT && next < count {
                let bytes = open.layout.encoded_part(next)?;
                let key = &keys[next];
                let space = memzinc_verifier::accounts::BufferHeader::LEN + bytes.len();
                let rent = self.rent_exempt(space)?;
                let ix = instructions::open_buffer(
                    &self.program_id,
                    &signer,
                    &key.pubkey(),
                    &labels[next],
                    bytes.len() as u32,
                    rent,
                );
                let flight = self.launch(ix, vec![key.insecure_clone()])?;
                window.push_back(Part {
                    index: next,
                    buffer: key.pubkey(),
                    stage: Stage::Opening(flight, bytes),
                });
                next += 1;
            }
            let mut flying: Vec<&mut Flight> = window.iter_mut().flat_map(|p| p.stage.flights()).collect();
            self.poll(&mut flying)?;
            let mut moved = false;
            for (at, part) in window.iter_mut().enumerate() {
                let label = &labels[part.index];
                match &mut part.stage {
                    Stage::Opening(f, bytes) if f.landed() => {
                        let upload = self.start_upload(&part.buffer, label, std::mem::take(bytes))?;
                        uploads += upload.writes();
                        part.stage = Stage::Uploading(upload);
                    }
                    Stage::Uploading(upload) => {
                        if !self.poll_upload(upload)? {
                            continue;
                        }
                        part.stage = Stage::Uploaded;
                    }
                    Stage::Uploaded if at == 0 => {
                        let check = instructions::check_relocation_part(
                            &self.program_id,
                            &signer,
                            open.policy_authority,
                            open.relocation,
                            &part.buffer,
                            open.stores,
                            label,
                            open.layout.parts[part.index].hi,
                        );
                        let ixs = vec![instructions::compute_unit_limit(1_400_000), check];
                        part.stage = Stage::Checking(self.launch(ixs, Vec::new())?);
                    }
                    _ => continue,
                }
                moved = true;
            }
            if let Some(Part {
                stage: Stage::Checking(f),
                index,
                ..
            }) = window.front()
            {
                if f.landed() {
                    tracing::debug!("part {} of {count} checked", index + 1);
                    window.pop_front();
                    moved = true;
                }
            }
            if moved {
                pause.reset();
            } else {
                pause.wait();
            }
        }
        Ok(uploads)
    }

    /// The indices of those of `addresses` that exist, owned by the attestor.
    fn owned_among(&self, addresses: &[Pubkey]) -> Result<Vec<usize>> {
        let mut owned = Vec::new();
        for (batch, chunk) in addresses.chunks(ACCOUNTS_PER_QUERY).enumerate() {
            let accounts = self.retrying(|| self.rpc.get_multiple_accounts(chunk))?;
            owned.extend(
                accounts
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.as_ref().is_some_and(|a| a.owner == self.program_id))
                    .map(|(i, _)| batch * ACCOUNTS_PER_QUERY + i),
            );
        }
        Ok(owned)
    }
}
