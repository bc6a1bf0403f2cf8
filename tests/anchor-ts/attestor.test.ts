// The attestor through an Anchor client: @coral-xyz/anchor loads idl/attestor.json, initializes a
// policy, uploads a real plan (healme, `memzinc snapshot`, `memzinc plan`) and attests it with
// instructions built from the IDL, then decodes the accounts, the event and a refusal with the
// IDL's types and error names. Runs against the validator `anchor test` names in
// ANCHOR_PROVIDER_URL / ANCHOR_WALLET, or else against a `memzinc localnet` it starts.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import {
  AnchorError,
  AnchorProvider,
  BN,
  BorshCoder,
  EventParser,
  Program,
  Wallet,
} from "@coral-xyz/anchor";
import {
  ComputeBudgetProgram,
  Connection,
  Keypair,
  LAMPORTS_PER_SOL,
  PublicKey,
  SystemProgram,
  Transaction,
  sendAndConfirmTransaction,
} from "@solana/web3.js";
import type { Attestor } from "./types/attestor";

const ROOT = resolve(__dirname, "../..");
const IDL = JSON.parse(readFileSync(join(ROOT, "idl/attestor.json"), "utf8"));

/// What `host/src/chain.rs` uses: one write_buffer instruction carries 900 bytes, attest gets
/// the most compute a transaction may have.
const CHUNK = 900;
const ATTEST_COMPUTE_UNITS = 1_400_000;
/// BufferHeader: discriminator, authority, plan_hash, version, data length (the IDL's `Buffer`).
const BUFFER_HEADER_LEN = 8 + 32 + 32 + 1 + 4;

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const tag = (s: string) => Buffer.from(s, "utf8");
const hex = (s: string) => Buffer.from(s, "hex");
const bytes = (a: number[] | Uint8Array) => Buffer.from(a);
const u64le = (n: BN | number) => new BN(n).toArrayLike(Buffer, "le", 8);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/// `memzinc::base::models_hash`: SHA-256 of models/*.mzn, in name order (what a plan names).
const modelsHash = (): Buffer => {
  const dir = join(ROOT, "models");
  const names = readdirSync(dir).filter((n) => n.endsWith(".mzn")).sort();
  return sha256(...names.map((n) => readFileSync(join(dir, n))));
};

/// The memzinc and healme binaries: MEMZINC_BIN (their directory, or the memzinc binary), else
/// cargo's target directory.
function binDir(): string {
  const candidates: string[] = [];
  const env = process.env.MEMZINC_BIN;
  if (env) candidates.push(existsSync(env) && statSync(env).isFile() ? dirname(env) : env);
  if (process.env.CARGO_TARGET_DIR) candidates.push(join(process.env.CARGO_TARGET_DIR, "debug"));
  candidates.push(join(ROOT, "target/debug"));
  const dir = candidates.find((d) => existsSync(join(d, "memzinc")) && existsSync(join(d, "healme")));
  if (!dir) {
    throw new Error(
      `memzinc and healme binaries not found in ${candidates.join(", ")}: set MEMZINC_BIN or run \`cargo build --bins\``,
    );
  }
  return dir;
}

/// Runs a child to completion; its stderr goes into the error if it fails.
function run(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, {
      env: { ...process.env, MEMZINC_ROOT: ROOT },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 120_000,
    });
  } catch (e: any) {
    throw new Error(`${file} ${args.join(" ")} failed: ${e.stderr ?? e.message}`);
  }
}

/// Waits for `line` on a child's stdout (or fails on exit or timeout).
function waitForOutput(child: ChildProcess, line: string, ms: number): Promise<void> {
  return new Promise((ok, fail) => {
    let seen = "";
    const timer = setTimeout(() => fail(new Error(`no "${line}" within ${ms} ms; output: ${seen}`)), ms);
    child.stdout!.on("data", (d: Buffer) => {
      seen += d.toString();
      if (seen.includes(line)) {
        clearTimeout(timer);
        ok();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`exited (${code}) before "${line}"; output: ${seen}`));
    });
  });
}

function stop(child: ChildProcess | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.on("exit", () => {
      clearTimeout(kill);
      ok();
    });
    child.kill(signal);
  });
}

interface PlanFile {
  target_id: string;
  snapshot_root: string;
  model_hash: string;
  regions: { start: number; end: number; flags: number }[];
  writes: { address: number; old: string; new: string }[];
  // Present only in a relocation's plan file.
  slots?: { address: number; len: number; from: number; to: number }[];
  plan_hash: string;
  evidence: string;
}

describe("attestor through @coral-xyz/anchor and idl/attestor.json", { timeout: 300_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), "memzinc-anchor-ts-"));
  let localnet: ChildProcess | undefined;
  let localnetLog = "";
  let connection: Connection;
  let program: Program<Attestor>;
  // A fresh authority per run, so the test can share a validator with other tests (the cargo
  // tests use ANCHOR_WALLET's own policy) and run twice against the same one.
  const authority = Keypair.generate();
  const hostSigner = Keypair.generate();
  // The policy's snapshot witness: attest takes a plan only against a root it recorded.
  const snapshotWitness = Keypair.generate();
  let witnessed: PublicKey;
  let policy: PublicKey;
  let policyHash: number[];
  let plan: PlanFile;
  let planHash: number[];
  let submission: Buffer;
  let targetChain: PublicKey;
  let attestation: PublicKey;

  before(async () => {
    let url = process.env.ANCHOR_PROVIDER_URL;
    let walletPath = process.env.ANCHOR_WALLET?.replace(/^~(?=\/)/, homedir());
    let wsEndpoint: string | undefined; // web3.js's default: the RPC port + 1, as solana-test-validator serves it
    if (!url || !walletPath) {
      walletPath = join(work, "payer.json");
      writeFileSync(walletPath, JSON.stringify(Array.from(Keypair.generate().secretKey)));
      const ready = join(work, "localnet.json");
      localnet = spawn(join(binDir(), "memzinc"), ["localnet", "-k", walletPath, "--ready-file", ready], {
        env: { ...process.env, MEMZINC_ROOT: ROOT },
        stdio: ["ignore", "ignore", "pipe"],
      });
      localnet.stderr!.on("data", (d: Buffer) => (localnetLog += d.toString()));
      const deadline = Date.now() + 90_000;
      while (!existsSync(ready)) {
        if (localnet.exitCode !== null) throw new Error(`memzinc localnet exited: ${localnetLog}`);
        if (Date.now() > deadline) throw new Error(`memzinc localnet not ready in 90 s: ${localnetLog}`);
        await sleep(100);
      }
      const info = JSON.parse(readFileSync(ready, "utf8"));
      url = info.rpc_url as string;
      wsEndpoint = info.ws_url as string;
    }
    connection = new Connection(url, { commitment: "confirmed", wsEndpoint });
    // npm runs scripts in this folder; a relative ANCHOR_WALLET is relative to where npm was started.
    walletPath = resolve(process.env.INIT_CWD ?? process.cwd(), walletPath);
    const payer = Keypair.fromSecretKey(Uint8Array.from(JSON.parse(readFileSync(walletPath, "utf8"))));
    await sendAndConfirmTransaction(
      connection,
      new Transaction().add(
        SystemProgram.transfer({
          fromPubkey: payer.publicKey,
          toPubkey: authority.publicKey,
          lamports: 2 * LAMPORTS_PER_SOL,
        }),
      ),
      [payer],
      { commitment: "confirmed" },
    );
    const provider = new AnchorProvider(connection, new Wallet(authority), {
      commitment: "confirmed",
      preflightCommitment: "confirmed",
    });
    // Anchor 0.30+: the program address comes from the IDL.
    program = new Program(IDL as Attestor, provider);
  }, { timeout: 120_000 });

  after(async () => {
    await stop(localnet, "SIGINT");
    rmSync(work, { recursive: true, force: true });
  });

  it("finds the program at the IDL's address", async () => {
    assert.equal(program.programId.toBase58(), IDL.address);
    const info = await connection.getAccountInfo(program.programId);
    assert.ok(info?.executable, "the attestor is deployed at the IDL's address");
  });

  it("initializes a policy and decodes it", async () => {
    const config = {
      rules: { wx: true, maxBytes: 64, maxWrites: 8, maxMoves: 0 },
      signers: [hostSigner.publicKey],
      witnesses: [snapshotWitness.publicKey],
      witnessThreshold: 1,
      maxSnapshotAge: new BN(9000),
      // The models `memzinc plan` solves with below: the policy pins them.
      modelHash: Array.from(modelsHash()),
      verifierHash: Array.from(sha256(tag("anchor-ts verifier"))),
      // No symbol rules: the real healme plan attested below proves no symbols.
      symbolRules: [],
    };
    // Only what the IDL cannot resolve: `policy` comes from its seeds, `system_program` from its
    // address, the signer `authority` from the provider's wallet.
    const method = program.methods.initializePolicy(config).accounts({});
    const keys = await method.pubkeys();
    const [expected, bump] = PublicKey.findProgramAddressSync(
      [tag("policy"), authority.publicKey.toBuffer()],
      program.programId,
    );
    assert.ok(keys.policy?.equals(expected), "Anchor derives the policy PDA from the IDL's seeds");
    assert.ok(keys.authority?.equals(authority.publicKey));
    assert.ok(keys.systemProgram?.equals(SystemProgram.programId));
    policy = expected;
    const sig = await method.rpc();

    const p = await program.account.policy.fetch(policy);
    assert.ok(p.authority.equals(authority.publicKey));
    assert.deepEqual(p.rules, config.rules);
    assert.equal(p.signerCount, 1);
    assert.equal(p.signers.length, 4);
    assert.ok(p.signers[0].equals(hostSigner.publicKey));
    for (const s of p.signers.slice(1)) assert.ok(s.equals(PublicKey.default));
    assert.deepEqual(p.modelHash, config.modelHash);
    assert.deepEqual(p.verifierHash, config.verifierHash);
    assert.equal(p.revision, 0);
    assert.equal(p.bump, bump);
    assert.equal(p.openedRevision, 0);
    assert.equal(p.witnessCount, 1);
    assert.ok(p.witnesses[0].equals(snapshotWitness.publicKey));
    assert.equal(p.witnessThreshold, 1);
    assert.ok(p.maxSnapshotAge.eqn(9000));
    assert.equal(p.closed, false);
    policyHash = p.configHash;
    assert.equal(p.symbolRuleCount, 0);
    assert.equal(p.symbolRules.length, 8, "the account keeps 8 symbol-rule slots");

    const events = [...new EventParser(program.programId, program.coder).parseLogs(await logsOf(sig))];
    assert.equal(events.length, 1);
    assert.equal(events[0].name, "policyInitialized");
    assert.ok(events[0].data.authority.equals(authority.publicKey));
    assert.deepEqual(events[0].data.rules, config.rules);
  });

  it("encodes a real plan's PlanCore with the IDL's type to the plan's hash", async () => {
    const bin = binDir();
    const healme = spawn(join(bin, "healme"), ["--corrupt-at", "3", "--period-ms", "50"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    try {
      await waitForOutput(healme, "OVERHEAT", 30_000);
      run(join(bin, "memzinc"), ["snapshot", "--pid", String(healme.pid), "-o", join(work, "t.core")]);
    } finally {
      await stop(healme);
    }
    const planPath = join(work, "t.plan.json");
    run(join(bin, "memzinc"), [
      "plan",
      join(work, "t.core"),
      "--spec",
      join(ROOT, "models/targets/healme.json"),
      "-o",
      planPath,
    ]);
    plan = JSON.parse(readFileSync(planPath, "utf8"));
    assert.ok(plan.writes.length > 0, "healme's corruption needs a repair");
    assert.equal(plan.model_hash, modelsHash().toString("hex"), "the plan names the models it was solved with");

    const num = (n: number) => {
      assert.ok(Number.isSafeInteger(n), `${n} is exact in JSON`);
      return new BN(n);
    };
    const core = {
      targetId: Array.from(hex(plan.target_id)),
      snapshotRoot: Array.from(hex(plan.snapshot_root)),
      modelHash: Array.from(hex(plan.model_hash)),
      regions: plan.regions.map((r) => ({ start: num(r.start), end: num(r.end), flags: r.flags })),
      writes: plan.writes.map((w) => ({ address: num(w.address), old: hex(w.old), new: hex(w.new) })),
      slots: (plan.slots ?? []).map((s) => ({ address: num(s.address), len: s.len, from: s.from, to: s.to })),
    };
    // Anchor TS camelCases the IDL: type `PlanCore` is `planCore`, field `target_id` is `targetId`.
    // (Its types coder encodes into 1000 bytes at most: enough for this plan, not for every plan.)
    const encoded = program.coder.types.encode("planCore", core);
    assert.equal(sha256(tag("memzinc/plan/v1"), encoded).toString("hex"), plan.plan_hash);
    // The same type through a coder of the IDL as written (snake_case), as non-Anchor-TS clients see it.
    const raw = new BorshCoder(IDL).types.decode("PlanCore", encoded);
    assert.equal(bytes(raw.target_id).toString("hex"), plan.target_id);
    assert.equal(raw.writes.length, plan.writes.length);

    planHash = Array.from(hex(plan.plan_hash));
    submission = Buffer.concat([encoded, hex(plan.evidence)]);
    [targetChain] = PublicKey.findProgramAddressSync(
      [tag("target"), policy.toBuffer(), hex(plan.target_id)],
      program.programId,
    );
    [attestation] = PublicKey.findProgramAddressSync(
      [tag("attestation"), targetChain.toBuffer(), u64le(0)],
      program.programId,
    );
  });

  it("records the plan's snapshot root under the witness key (the authority pays)", async () => {
    const targetId = Array.from(hex(plan.target_id));
    const root = Array.from(hex(plan.snapshot_root));
    [witnessed] = PublicKey.findProgramAddressSync(
      [tag("snapshot"), snapshotWitness.publicKey.toBuffer(), hex(plan.target_id), hex(plan.snapshot_root)],
      program.programId,
    );
    const method = program.methods
      .witnessSnapshot(targetId, root)
      .accountsPartial({ witness: snapshotWitness.publicKey, payer: authority.publicKey })
      .signers([snapshotWitness]);
    const keys = await method.pubkeys();
    assert.ok(keys.witnessedSnapshot?.equals(witnessed), "Anchor derives the record from the IDL's seeds");
    const sig = await method.rpc();
    const w = await program.account.witnessedSnapshot.fetch(witnessed);
    assert.ok(w.witness.equals(snapshotWitness.publicKey));
    assert.deepEqual(w.snapshotRoot, root);
    assert.deepEqual(w.targetId, targetId);
    const events = [...new EventParser(program.programId, program.coder).parseLogs(await logsOf(sig))];
    assert.deepEqual(events.map((e) => e.name), ["snapshotWitnessed"]);
  });

  /// open_buffer (with the system create_account before it) and write_buffer in 900-byte chunks.
  async function upload(): Promise<PublicKey> {
    const buffer = Keypair.generate();
    const space = BUFFER_HEADER_LEN + submission.length;
    await program.methods
      .openBuffer(planHash, submission.length)
      .accounts({ buffer: buffer.publicKey })
      .preInstructions([
        SystemProgram.createAccount({
          fromPubkey: authority.publicKey,
          newAccountPubkey: buffer.publicKey,
          lamports: await connection.getMinimumBalanceForRentExemption(space),
          space,
          programId: program.programId,
        }),
      ])
      .signers([buffer])
      .rpc();
    const opened = await program.account.buffer.fetch(buffer.publicKey);
    assert.ok(opened.authority.equals(authority.publicKey));
    assert.deepEqual(opened.planHash, planHash);
    assert.equal(opened.version, 1);
    assert.equal(opened.data.length, submission.length);

    const writes: Promise<string>[] = [];
    for (let offset = 0; offset < submission.length; offset += CHUNK) {
      writes.push(
        program.methods
          .writeBuffer(planHash, offset, submission.subarray(offset, offset + CHUNK))
          .accounts({ buffer: buffer.publicKey })
          .rpc(),
      );
    }
    await Promise.all(writes);
    const filled = await program.account.buffer.fetch(buffer.publicKey);
    assert.ok(Buffer.compare(filled.data, submission) === 0, "the buffer holds PlanCore || Evidence");
    return buffer.publicKey;
  }

  /// attest with a compute-unit limit. The plan marker is resolved from the IDL's seeds (target
  /// chain, `plan_hash` argument), and so is the attestation when the chain exists (its seeds read
  /// the chain's `next_seq`); the first attestation of a target names it, as its chain is created
  /// by this very instruction.
  function attest(buffer: PublicKey, firstAttestation?: PublicKey) {
    const method = program.methods.attest(planHash);
    return (
      firstAttestation
        ? method.accountsPartial({ policy, targetChain, attestation: firstAttestation, buffer })
        : method.accounts({ policy, targetChain, buffer })
    )
      .remainingAccounts([{ pubkey: witnessed, isSigner: false, isWritable: false }])
      .preInstructions([ComputeBudgetProgram.setComputeUnitLimit({ units: ATTEST_COMPUTE_UNITS })]);
  }

  async function logsOf(sig: string): Promise<string[]> {
    const tx = await connection.getTransaction(sig, { commitment: "confirmed", maxSupportedTransactionVersion: 0 });
    assert.ok(tx?.meta?.logMessages, `logs of ${sig}`);
    assert.equal(tx.meta.err, null);
    return tx.meta.logMessages;
  }

  it("uploads the plan and attests it; the program accepts", async () => {
    const buffer = await upload();
    const method = attest(buffer, attestation);
    const keys = await method.pubkeys();
    const [marker, markerBump] = PublicKey.findProgramAddressSync(
      [tag("plan"), targetChain.toBuffer(), Buffer.from(planHash)],
      program.programId,
    );
    assert.ok(keys.planMarker?.equals(marker), "Anchor derives the plan marker from the IDL's seeds");
    const sig = await method.rpc();
    const tx = await connection.getTransaction(sig, { commitment: "confirmed", maxSupportedTransactionVersion: 0 });
    console.log(`attest: ${tx?.meta?.computeUnitsConsumed} compute units, ${submission.length} bytes uploaded`);
    assert.equal(await connection.getAccountInfo(buffer), null, "attest closes the buffer");

    const a = await program.account.attestation.fetch(attestation);
    assert.deepEqual(a.planHash, planHash);
    assert.ok(a.seq.eqn(0));
    assert.equal(bytes(a.targetId).toString("hex"), plan.target_id);
    assert.equal(bytes(a.snapshotRoot).toString("hex"), plan.snapshot_root);
    assert.ok(a.policy.equals(policy));
    assert.ok(a.signer.equals(authority.publicKey));
    assert.deepEqual(a.prevHash, new Array(32).fill(0));
    assert.equal(a.writeCount, plan.writes.length);
    assert.equal(
      a.byteCount,
      plan.writes.reduce((n, w) => n + hex(w.new).length, 0),
    );
    assert.equal(a.revoked, false);
    assert.equal(a.bump, PublicKey.findProgramAddressSync(
      [tag("attestation"), targetChain.toBuffer(), u64le(0)],
      program.programId,
    )[1]);
    // The region table hash and the link hash, recomputed here from the decoded fields.
    // PlanCore: target_id, snapshot_root, model_hash, then the regions.
    const regionsEncoded = submission.subarray(96, 96 + 4 + 17 * plan.regions.length);
    assert.deepEqual(a.regionTableHash, Array.from(sha256(tag("memzinc/regions/v1"), regionsEncoded)));
    assert.equal(a.policyRevision, 0);
    assert.deepEqual(a.policyHash, policyHash, "the record names the configuration that judged it");
    // The witness whose record counted, with the record's slot.
    const record = await program.account.witnessedSnapshot.fetch(witnessed);
    assert.equal(a.witnessCount, 1);
    assert.ok(a.witnesses[0].equals(snapshotWitness.publicKey));
    assert.ok(a.witnessSlots[0].eq(record.slot));
    assert.ok(a.witnessSlots.slice(1).every((s) => s.eqn(0)));
    const revision = Buffer.alloc(4);
    revision.writeUInt32LE(a.policyRevision);
    const link = sha256(
      tag("memzinc/attestation/v3"),
      bytes(a.prevHash),
      u64le(a.seq),
      a.policy.toBuffer(),
      bytes(a.targetId),
      a.signer.toBuffer(),
      u64le(a.slot),
      bytes(a.planHash),
      bytes(a.snapshotRoot),
      bytes(a.regionTableHash),
      revision,
      bytes(a.policyHash),
      Buffer.from([a.witnessCount]),
      ...a.witnesses.map((w) => w.toBuffer()),
      ...a.witnessSlots.map((s) => u64le(s)),
    );
    assert.deepEqual(a.hash, Array.from(link));

    const chain = await program.account.targetChain.fetch(targetChain);
    assert.ok(chain.nextSeq.eqn(1));
    assert.deepEqual(chain.headHash, a.hash);
    assert.ok(chain.policy.equals(policy));
    const m = await program.account.planMarker.fetch(marker);
    assert.ok(m.seq.eqn(0));
    assert.equal(m.bump, markerBump);

    // The AttestationRecorded event in the transaction's "Program data:" log says the same.
    const events = [...new EventParser(program.programId, program.coder).parseLogs(tx!.meta!.logMessages!)];
    assert.deepEqual(
      events.map((e) => e.name),
      ["attestationRecorded"],
    );
    const e = events[0].data;
    for (const k of ["targetId", "snapshotRoot", "regionTableHash", "planHash", "prevHash", "hash", "policyHash"] as const) {
      assert.deepEqual(e[k], a[k], k);
    }
    assert.ok(e.policy.equals(policy));
    assert.ok(e.signer.equals(authority.publicKey));
    assert.ok(e.seq.eq(a.seq));
    assert.ok(e.slot.eq(a.slot));
    assert.equal(e.writeCount, a.writeCount);
    assert.equal(e.byteCount, a.byteCount);
    assert.equal(e.witnessCount, a.witnessCount);
    assert.ok(e.witnesses.every((w: PublicKey, i: number) => w.equals(a.witnesses[i])));
    assert.ok(e.witnessSlots.every((s: BN, i: number) => s.eq(a.witnessSlots[i])));
  });

  it("refuses the same plan again with the IDL's error (PlanAlreadyAttested, 6033)", async () => {
    const buffer = await upload();
    const method = attest(buffer);
    const keys = await method.pubkeys();
    const [second] = PublicKey.findProgramAddressSync(
      [tag("attestation"), targetChain.toBuffer(), u64le(1)],
      program.programId,
    );
    assert.ok(keys.attestation?.equals(second), "Anchor derives attestation 1 from the chain's next_seq");
    await assert.rejects(method.rpc(), (err: unknown) => {
      assert.ok(err instanceof AnchorError, `an AnchorError, not ${err}`);
      assert.equal(err.error.errorCode.code, "PlanAlreadyAttested");
      assert.equal(err.error.errorCode.number, 6033);
      const declared = IDL.errors.find((e: { name: string }) => e.name === err.error.errorCode.code);
      assert.equal(declared?.code, err.error.errorCode.number, "the IDL names the same code");
      assert.equal(declared?.msg, err.error.errorMessage);
      assert.ok(err.program.equals(program.programId));
      return true;
    });
    // Nothing of the refused transaction happened: the buffer is still there, the chain unchanged.
    const chain = await program.account.targetChain.fetch(targetChain);
    assert.ok(chain.nextSeq.eqn(1));
    await program.methods.closeBuffer(planHash).accounts({ buffer }).rpc();
    assert.equal(await connection.getAccountInfo(buffer), null, "close_buffer returns the rent");
  });
});
