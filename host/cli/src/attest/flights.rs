//! Transactions in flight: sent without waiting, then confirmed together by batched status
//! queries. A transaction whose blockhash expired before it landed can no longer land: it is
//! signed again with a new blockhash and re-sent, so a re-send never acts twice.

use std::time::{Duration, Instant};

use solana_commitment_config::CommitmentConfig;
use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_rpc_client_api::config::RpcSendTransactionConfig;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction_error::TransactionError;

use memzinc_verifier::accounts::{BufferHeader, Relocation};
use memzinc_verifier::error::VerifyError;
use memzinc_verifier::relocation_stream::StreamState;
use solana_pubkey::Pubkey;
use solana_rpc_client_api::client_error::Error as ClientError;

use super::chain::{refusal, Client, RETRIES};
use super::program::{self as instructions, UPLOAD_CHUNK};
use memzinc::base::{Error, Result};

/// How many transactions are signed with one blockhash before a new one is asked for: a local
/// validator that makes a block per transaction ages blockhashes (150 blocks) quickly.
const USES_PER_BLOCKHASH: u32 = 16;
/// `getSignatureStatuses` takes at most this many signatures.
const STATUSES_PER_QUERY: usize = 256;
/// How long a transaction may stay unseen before it is sent again (a node may drop it).
const RESEND_AFTER: Duration = Duration::from_secs(2);
/// The longest pause between two polls of the statuses.
const MOST_POLL_PAUSE: Duration = Duration::from_millis(200);

/// A buffer being written, one transaction a chunk of [`UPLOAD_CHUNK`] bytes.
pub(super) struct Upload {
    buffer: Pubkey,
    bytes: Vec<u8>,
    /// Each write, until its bytes are seen in the buffer.
    writes: Vec<Option<Flight>>,
}

impl Upload {
    /// Its write transactions.
    pub(super) fn writes(&self) -> usize {
        self.writes.len()
    }
}

/// One transaction sent and not yet confirmed, kept so it can be sent again.
pub(super) struct Flight {
    transaction: Transaction,
    instructions: Vec<Instruction>,
    /// Its signers besides the payer.
    signers: Vec<Keypair>,
    sent: Instant,
    resigned: u32,
    landed: bool,
}

impl Flight {
    pub(super) fn signature(&self) -> Signature {
        self.transaction.signatures[0]
    }

    pub(super) fn landed(&self) -> bool {
        self.landed
    }
}

/// A pause that doubles from 2 ms to [`MOST_POLL_PAUSE`] while nothing changes.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff(Duration::from_millis(2))
    }

    pub(super) fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(MOST_POLL_PAUSE);
    }

    pub(super) fn reset(&mut self) {
        *self = Backoff::new();
    }
}

impl Client {
    /// A blockhash to sign with: the cached one while it has uses left, else (or when `fresh`)
    /// the cluster's latest.
    fn blockhash(&self, fresh: bool) -> Result<Hash> {
        let mut recent = self.recent_blockhash.0.lock().unwrap_or_else(|e| e.into_inner());
        match recent.as_mut() {
            Some((hash, uses)) if !fresh && *uses < USES_PER_BLOCKHASH => {
                *uses += 1;
                Ok(*hash)
            }
            _ => {
                let hash = self.retrying(|| self.rpc.get_latest_blockhash())?;
                *recent = Some((hash, 1));
                Ok(hash)
            }
        }
    }

    fn sign(&self, instructions: &[Instruction], signers: &[Keypair], fresh: bool) -> Result<Transaction> {
        let mut all: Vec<&Keypair> = vec![&self.payer];
        all.extend(signers.iter());
        let blockhash = self.blockhash(fresh)?;
        Ok(Transaction::new_signed_with_payer(
            instructions,
            Some(&self.payer.pubkey()),
            &all,
            blockhash,
        ))
    }

    /// Signs and sends one transaction without waiting for it to be confirmed. The node first
    /// simulates it (against the bank its blockhash was taken from, as `send_transaction`
    /// does), so one that would fail is refused here with its reason, before it costs a fee.
    /// Without it, surfpool 1.7 dropped some writes of a burst without a trace: their blockhash
    /// had aged out, which the simulation reports, and the write is signed again at once.
    pub(super) fn launch(&self, instructions: Vec<Instruction>, signers: Vec<Keypair>) -> Result<Flight> {
        self.try_launch(instructions, signers)?.map_err(|e| self.explain(e))
    }

    /// As [`Client::launch`], but a transaction the node refused is returned as the node's
    /// error, for the caller to judge; `Err` is only what sending could not get past.
    fn try_launch(
        &self,
        instructions: Vec<Instruction>,
        signers: Vec<Keypair>,
    ) -> Result<std::result::Result<Flight, ClientError>> {
        let config = RpcSendTransactionConfig {
            preflight_commitment: Some(self.rpc.commitment().commitment),
            ..RpcSendTransactionConfig::default()
        };
        let mut transaction = self.sign(&instructions, &signers, false)?;
        let mut delay = Duration::from_millis(200);
        for attempt in 1.. {
            match self.rpc.send_transaction_with_config(&transaction, config) {
                Ok(_) => break,
                // A blockhash the node does not know (yet): the transaction cannot have run.
                Err(e) if attempt < RETRIES && blockhash_not_found(&e) => {
                    std::thread::sleep(Duration::from_millis(50));
                    transaction = self.sign(&instructions, &signers, true)?;
                }
                // A transport error sends the same signed transaction again: a copy that already
                // arrived has the same signature, so it cannot act twice.
                Err(e) if e.get_transaction_error().is_none() && attempt < RETRIES => {
                    tracing::warn!("RPC {}: {e}; retrying in {delay:?}", self.url);
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) if e.get_transaction_error().is_some() => return Ok(Err(e)),
                Err(e) => return Err(self.explain(e)),
            }
        }
        Ok(Ok(Flight {
            transaction,
            instructions,
            signers,
            sent: Instant::now(),
            resigned: 0,
            landed: false,
        }))
    }

    /// Asks for the status of every flight not yet landed (in batches), marks those confirmed,
    /// fails on the first that failed, and sends again those unseen for a while: the same
    /// transaction while its blockhash is valid, else signed anew. Returns whether all landed.
    pub(super) fn poll(&self, flights: &mut [&mut Flight]) -> Result<bool> {
        let mut waiting: Vec<&mut Flight> = flights.iter_mut().filter(|f| !f.landed).map(|f| &mut **f).collect();
        for batch in waiting.chunks_mut(STATUSES_PER_QUERY) {
            let signatures: Vec<Signature> = batch.iter().map(|f| f.signature()).collect();
            let statuses = self.retrying(|| self.rpc.get_signature_statuses(&signatures))?.value;
            for (flight, status) in batch.iter_mut().zip(statuses) {
                match status {
                    Some(s) => {
                        if let Some(e) = s.err {
                            return Err(self.explain_failed(&flight.signature(), &e));
                        }
                        flight.landed = s.satisfies_commitment(CommitmentConfig::confirmed());
                    }
                    None if flight.sent.elapsed() > RESEND_AFTER => self.resend(flight)?,
                    None => {}
                }
            }
        }
        Ok(flights.iter().all(|f| f.landed))
    }

    /// Sends `flight` again: the same transaction while its blockhash is valid (a copy that
    /// arrives twice runs once), else signed anew (the old one can no longer land).
    fn resend(&self, flight: &mut Flight) -> Result<()> {
        let blockhash = flight.transaction.message.recent_blockhash;
        let valid = self.retrying(|| self.rpc.is_blockhash_valid(&blockhash, CommitmentConfig::processed()))?;
        if !valid {
            if flight.resigned + 1 >= RETRIES {
                return Err(Error::Rpc {
                    url: self.url.clone(),
                    why: format!(
                        "transaction {} did not land before its blockhash expired, {} times",
                        flight.signature(),
                        RETRIES
                    ),
                });
            }
            flight.transaction = self.sign(&flight.instructions, &flight.signers, true)?;
            flight.resigned += 1;
        }
        tracing::debug!("sending {} again", flight.signature());
        let config = RpcSendTransactionConfig {
            skip_preflight: true,
            ..RpcSendTransactionConfig::default()
        };
        self.retrying(|| self.rpc.send_transaction_with_config(&flight.transaction, config))?;
        flight.sent = Instant::now();
        Ok(())
    }

    /// Polls until every flight has landed.
    pub(super) fn land(&self, flights: &mut [Flight]) -> Result<()> {
        let mut all: Vec<&mut Flight> = flights.iter_mut().collect();
        let mut pause = Backoff::new();
        while !self.poll(&mut all)? {
            pause.wait();
        }
        Ok(())
    }

    /// Sends one transaction (simulated first) and waits until it is confirmed.
    pub fn send(&self, instructions: &[Instruction], extra_signers: &[&Keypair]) -> Result<Signature> {
        let signers = extra_signers.iter().map(|k| k.insecure_clone()).collect();
        let mut flight = [self.launch(instructions.to_vec(), signers)?];
        self.land(&mut flight)?;
        Ok(flight[0].signature())
    }

    /// Sends one transaction per instruction without waiting in between, then waits until all
    /// are confirmed.
    pub fn send_all(&self, instructions: Vec<Instruction>) -> Result<()> {
        let mut flights = instructions
            .into_iter()
            .map(|ix| self.launch(vec![ix], Vec::new()))
            .collect::<Result<Vec<_>>>()?;
        self.land(&mut flights)
    }

    /// Starts writing `bytes` into `buffer` (opened under `label`): every write sent at once.
    pub(super) fn start_upload(&self, buffer: &Pubkey, label: &[u8; 32], bytes: Vec<u8>) -> Result<Upload> {
        let writes = instructions::upload(&self.program_id, &self.authority(), buffer, label, &bytes)
            .into_iter()
            .map(|ix| self.launch(vec![ix], Vec::new()).map(Some))
            .collect::<Result<Vec<_>>>()?;
        Ok(Upload {
            buffer: *buffer,
            bytes,
            writes,
        })
    }

    /// Reads the buffer once: a write whose bytes are there has landed, one missing for a while
    /// is sent again. Returns whether every byte is there. Reading the buffer, not each write's
    /// status, keeps this one query however many writes there are (surfpool answers a status by
    /// encoding the whole transaction, a write's 900 bytes in base58).
    pub(super) fn poll_upload(&self, upload: &mut Upload) -> Result<bool> {
        let data = self.owned_data(&upload.buffer)?.unwrap_or_default();
        let body = data.get(BufferHeader::LEN..).unwrap_or_default();
        for (i, write) in upload.writes.iter_mut().enumerate() {
            let Some(flight) = write else { continue };
            let range = i * UPLOAD_CHUNK..((i + 1) * UPLOAD_CHUNK).min(upload.bytes.len());
            if body.get(range.clone()) == Some(&upload.bytes[range]) {
                *write = None;
            } else if flight.sent.elapsed() > RESEND_AFTER {
                self.resend(flight)?;
            }
        }
        Ok(upload.writes.iter().all(Option::is_none))
    }

    /// Writes `bytes` into `buffer` (opened under `label`) and waits until all are there.
    /// Returns the write transactions.
    pub(super) fn upload_buffer(&self, buffer: &Pubkey, label: &[u8; 32], bytes: Vec<u8>) -> Result<usize> {
        let mut upload = self.start_upload(buffer, label, bytes)?;
        let mut pause = Backoff::new();
        while !self.poll_upload(&mut upload)? {
            pause.wait();
        }
        Ok(upload.writes())
    }

    /// Sends the `append_slots` of a relocation (each with the index of its first slot) all at
    /// once, then follows the relocation's count of appended slots until it reaches `total`.
    /// The program takes an append only at the count (`SlotsNotNext` otherwise), so one that
    /// runs early or twice changes nothing. Those that did not land are sent again from where
    /// the count stopped; a launch refused because an earlier append has not run yet where the
    /// node simulated it ends that round's sending. Returns how many appends the table still
    /// needed (all of them, unless an interrupted run appended some).
    pub(super) fn append_in_order(
        &self,
        relocation: &Pubkey,
        appends: &[(u32, Instruction)],
        total: u32,
    ) -> Result<usize> {
        let mut state = self.relocation_state(relocation)?;
        let needed = appends.iter().filter(|(first, _)| *first >= state.appended).count();
        let mut stalled = 0;
        while state.appended < total {
            let Some(from) = appends.iter().position(|(first, _)| *first == state.appended) else {
                return Err(Error::Transaction(format!(
                    "the relocation holds {} slots, where none of this plan's appends starts; `attest` again starts it over",
                    state.appended
                )));
            };
            for (_, ix) in &appends[from..] {
                match self.try_launch(vec![ix.clone()], Vec::new())? {
                    Ok(_) => {}
                    Err(e) if refusal(&e) == Some(VerifyError::SlotsNotNext) => break,
                    Err(e) => return Err(self.explain(e)),
                }
            }
            let before = state.appended;
            let (mut since, mut pause) = (Instant::now(), Backoff::new());
            while state.appended < total && since.elapsed() < RESEND_AFTER {
                pause.wait();
                let now = self.relocation_state(relocation)?;
                if now.appended != state.appended {
                    (since, state) = (Instant::now(), now);
                    pause.reset();
                }
            }
            stalled = if state.appended == before { stalled + 1 } else { 0 };
            if stalled >= RETRIES {
                return Err(Error::Transaction(format!(
                    "the relocation's slots stopped at {} of {total}: {stalled} rounds of appends sent from there did not land",
                    state.appended
                )));
            }
            if state.appended < total {
                tracing::debug!("appending again from slot {} of {total}", state.appended);
            }
        }
        Ok(needed)
    }

    fn relocation_state(&self, relocation: &Pubkey) -> Result<StreamState> {
        let data = self.owned_data(relocation)?.unwrap_or_default();
        let decoded =
            Relocation::decode(&data).map_err(|e| Error::Transaction(format!("relocation {relocation}: {e}")))?;
        Ok(decoded.state)
    }

    fn explain_failed(&self, signature: &Signature, e: &TransactionError) -> Error {
        match self.explain_transaction_error(e) {
            Error::Transaction(why) => Error::Transaction(format!("{why} (transaction {signature})")),
            other => other,
        }
    }
}

/// The node does not know the transaction's blockhash: it has not run and cannot run.
fn blockhash_not_found(e: &ClientError) -> bool {
    matches!(e.get_transaction_error(), Some(TransactionError::BlockhashNotFound))
}
