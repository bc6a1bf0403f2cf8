/**
 * Program IDL in camelCase format in order to be used in JS/TS.
 *
 * Note that this is only a type helper and is not the actual IDL. The original
 * IDL can be found at `target/idl/attestor.json`.
 */
export type Attestor = {
  "address": "3uDr6PDqENa1s7SUBnPmi8i3GZXrTZUPxVBbVWqX7fpJ",
  "metadata": {
    "name": "attestor",
    "version": "0.1.0",
    "spec": "0.1.0",
    "description": "memzinc attestor: re-checks patch plans and their Merkle evidence against a policy and records them in a hash-chained history per target"
  },
  "instructions": [
    {
      "name": "appendSlots",
      "docs": [
        "Who: the relocation's authority. Appends whole 16-byte stream slots (address u64, len u32, to u32) to the table as its slots first.. (first must equal the count appended so far, so an append that runs out of order or twice is refused): ascending, disjoint, aligned, at most 512 bytes, each to another slot. Remaining accounts: the stores the slots land in (from the first slot's store; one or two), in order, writable."
      ],
      "discriminator": [
        96,
        139,
        170,
        40,
        222,
        158,
        76,
        10
      ],
      "accounts": [
        {
          "name": "authority",
          "signer": true
        },
        {
          "name": "relocation",
          "writable": true
        }
      ],
      "args": [
        {
          "name": "first",
          "type": "u32"
        },
        {
          "name": "slots",
          "type": "bytes"
        }
      ]
    },
    {
      "name": "attest",
      "docs": [
        "Who: the policy authority or one of its host signers. Verify the uploaded plan and its Merkle evidence against the open policy (and its model_hash, when the policy pins one), its snapshot root against the witnessed-snapshot records passed as remaining accounts (witness_threshold distinct policy witnesses, none older than max_snapshot_age), and record it as the next link of the target's chain, with the policy revision and configuration hash that judged it and the witnesses whose records counted. Closes the buffer."
      ],
      "discriminator": [
        83,
        148,
        120,
        119,
        144,
        139,
        117,
        160
      ],
      "accounts": [
        {
          "name": "signer",
          "docs": [
            "The policy authority or one of its host signers; pays."
          ],
          "writable": true,
          "signer": true
        },
        {
          "name": "policy"
        },
        {
          "name": "targetChain",
          "writable": true
        },
        {
          "name": "attestation",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  97,
                  116,
                  116,
                  101,
                  115,
                  116,
                  97,
                  116,
                  105,
                  111,
                  110
                ]
              },
              {
                "kind": "account",
                "path": "targetChain"
              },
              {
                "kind": "account",
                "path": "targetChain.nextSeq",
                "account": "targetChain"
              }
            ]
          }
        },
        {
          "name": "planMarker",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  112,
                  108,
                  97,
                  110
                ]
              },
              {
                "kind": "account",
                "path": "targetChain"
              },
              {
                "kind": "arg",
                "path": "planHash"
              }
            ]
          }
        },
        {
          "name": "buffer",
          "writable": true
        },
        {
          "name": "systemProgram",
          "address": "11111111111111111111111111111111"
        }
      ],
      "args": [
        {
          "name": "planHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        }
      ]
    },
    {
      "name": "checkRelocationPart",
      "docs": [
        "Who: the relocation's authority, under the policy at the revision it was opened at. Checks the part in the buffer (its writes and slots in [the last part's end, hi), proven against the snapshot root; it may have no writes, only slots whose bytes stay) and balances its slots into the records; closes the buffer. Remaining accounts: the relocation's stores in order, writable."
      ],
      "discriminator": [
        79,
        206,
        184,
        1,
        79,
        154,
        254,
        232
      ],
      "accounts": [
        {
          "name": "authority",
          "writable": true,
          "signer": true
        },
        {
          "name": "policy"
        },
        {
          "name": "relocation",
          "writable": true
        },
        {
          "name": "buffer",
          "writable": true
        }
      ],
      "args": [
        {
          "name": "planHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "hi",
          "type": "u64"
        }
      ]
    },
    {
      "name": "closeBuffer",
      "discriminator": [
        46,
        114,
        179,
        58,
        57,
        45,
        194,
        172
      ],
      "accounts": [
        {
          "name": "uploader",
          "writable": true,
          "signer": true
        },
        {
          "name": "buffer",
          "writable": true
        }
      ],
      "args": [
        {
          "name": "planHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        }
      ]
    },
    {
      "name": "closePolicy",
      "docs": [
        "Who: the policy's authority. Marks the policy closed: nothing more is attested under it, and its outstanding attestations take no receipt (and may not be applied), even after reopening. The account stays."
      ],
      "discriminator": [
        55,
        42,
        248,
        229,
        222,
        138,
        26,
        252
      ],
      "accounts": [
        {
          "name": "authority",
          "writable": true,
          "signer": true
        },
        {
          "name": "policy",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  112,
                  111,
                  108,
                  105,
                  99,
                  121
                ]
              },
              {
                "kind": "account",
                "path": "authority"
              }
            ]
          }
        }
      ],
      "args": []
    },
    {
      "name": "closeRelocation",
      "docs": [
        "Who: the authority that opened them. Closes the relocation and store accounts given as remaining accounts (writable); their rent goes back to the authority."
      ],
      "discriminator": [
        190,
        21,
        132,
        204,
        38,
        106,
        211,
        123
      ],
      "accounts": [
        {
          "name": "authority",
          "writable": true,
          "signer": true
        }
      ],
      "args": []
    },
    {
      "name": "finishRelocation",
      "docs": [
        "Who: the relocation's authority, under the policy at the revision it was opened at. Every slot reached and balanced, at least one write, the totals within the policy: records the relocation as attest records a plan, under its streamed plan hash, its snapshot root witnessed as of the slot the relocation was opened at; closes the relocation account. Remaining accounts: witnessed-snapshot records of its snapshot root."
      ],
      "discriminator": [
        159,
        203,
        70,
        76,
        198,
        242,
        214,
        114
      ],
      "accounts": [
        {
          "name": "authority",
          "writable": true,
          "signer": true
        },
        {
          "name": "policy"
        },
        {
          "name": "targetChain",
          "writable": true
        },
        {
          "name": "attestation",
          "writable": true
        },
        {
          "name": "planMarker",
          "writable": true
        },
        {
          "name": "relocation",
          "writable": true
        },
        {
          "name": "systemProgram",
          "address": "11111111111111111111111111111111"
        }
      ],
      "args": []
    },
    {
      "name": "initializePolicy",
      "docs": [
        "Who: the authority (its own policy PDA). Creates the policy at revision 0, or reopens a closed one at its next revision. Pre-funded addresses are accepted."
      ],
      "discriminator": [
        9,
        186,
        86,
        225,
        129,
        162,
        231,
        56
      ],
      "accounts": [
        {
          "name": "authority",
          "writable": true,
          "signer": true
        },
        {
          "name": "policy",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  112,
                  111,
                  108,
                  105,
                  99,
                  121
                ]
              },
              {
                "kind": "account",
                "path": "authority"
              }
            ]
          }
        },
        {
          "name": "systemProgram",
          "address": "11111111111111111111111111111111"
        }
      ],
      "args": [
        {
          "name": "config",
          "type": {
            "defined": {
              "name": "policyConfig"
            }
          }
        }
      ]
    },
    {
      "name": "openBuffer",
      "discriminator": [
        44,
        175,
        185,
        234,
        87,
        198,
        98,
        249
      ],
      "accounts": [
        {
          "name": "uploader",
          "signer": true
        },
        {
          "name": "buffer",
          "docs": [
            "Allocated by the uploader in the same transaction (system create_account, owner: this program); signs, so nobody else can stamp it as theirs."
          ],
          "writable": true,
          "signer": true
        }
      ],
      "args": [
        {
          "name": "planHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "len",
          "type": "u32"
        }
      ]
    },
    {
      "name": "openRelocation",
      "docs": [
        "Who: the policy authority or one of its host signers, holding the keys of the fresh relocation and store accounts. Opens a relocation checked in parts (relocation_stream): the policy allows its moves, its accounts are fresh and sized for it. Remaining accounts: the stores, writable signers, each allocated with RelocationStore's 72 bytes plus per_store * 49."
      ],
      "discriminator": [
        30,
        74,
        197,
        155,
        98,
        145,
        137,
        157
      ],
      "accounts": [
        {
          "name": "authority",
          "signer": true
        },
        {
          "name": "policy"
        },
        {
          "name": "relocation",
          "docs": [
            "Allocated by the authority (system create_account, owner: this program, Relocation's size); signs."
          ],
          "writable": true,
          "signer": true
        }
      ],
      "args": [
        {
          "name": "targetId",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "snapshotRoot",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "modelHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "regionTableHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "slotCount",
          "type": "u32"
        },
        {
          "name": "perStore",
          "type": "u32"
        }
      ]
    },
    {
      "name": "recordApplied",
      "docs": [
        "Who: the attestation's signer or the policy authority. Records the one receipt of an attestation that may still be applied (not revoked, its policy open and not reopened since)."
      ],
      "discriminator": [
        188,
        96,
        138,
        140,
        130,
        180,
        191,
        213
      ],
      "accounts": [
        {
          "name": "signer",
          "docs": [
            "The attestation's signer or the policy authority; pays."
          ],
          "writable": true,
          "signer": true
        },
        {
          "name": "policy"
        },
        {
          "name": "targetChain"
        },
        {
          "name": "attestation",
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  97,
                  116,
                  116,
                  101,
                  115,
                  116,
                  97,
                  116,
                  105,
                  111,
                  110
                ]
              },
              {
                "kind": "account",
                "path": "targetChain"
              },
              {
                "kind": "arg",
                "path": "seq"
              }
            ]
          }
        },
        {
          "name": "receipt",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  114,
                  101,
                  99,
                  101,
                  105,
                  112,
                  116
                ]
              },
              {
                "kind": "account",
                "path": "attestation"
              }
            ]
          }
        },
        {
          "name": "systemProgram",
          "address": "11111111111111111111111111111111"
        }
      ],
      "args": [
        {
          "name": "seq",
          "type": "u64"
        },
        {
          "name": "outcome",
          "type": "u8"
        },
        {
          "name": "readbackHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        }
      ]
    },
    {
      "name": "revoke",
      "docs": [
        "Who: the policy's authority. Marks an attestation revoked."
      ],
      "discriminator": [
        170,
        23,
        31,
        34,
        133,
        173,
        93,
        242
      ],
      "accounts": [
        {
          "name": "authority",
          "signer": true
        },
        {
          "name": "policy",
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  112,
                  111,
                  108,
                  105,
                  99,
                  121
                ]
              },
              {
                "kind": "account",
                "path": "authority"
              }
            ]
          }
        },
        {
          "name": "targetChain"
        },
        {
          "name": "attestation",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  97,
                  116,
                  116,
                  101,
                  115,
                  116,
                  97,
                  116,
                  105,
                  111,
                  110
                ]
              },
              {
                "kind": "account",
                "path": "targetChain"
              },
              {
                "kind": "arg",
                "path": "seq"
              }
            ]
          }
        }
      ],
      "args": [
        {
          "name": "seq",
          "type": "u64"
        }
      ]
    },
    {
      "name": "updatePolicy",
      "docs": [
        "Who: the policy's authority. Replaces the configuration of an open policy and bumps its revision."
      ],
      "discriminator": [
        212,
        245,
        246,
        7,
        163,
        151,
        18,
        57
      ],
      "accounts": [
        {
          "name": "authority",
          "signer": true
        },
        {
          "name": "policy",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  112,
                  111,
                  108,
                  105,
                  99,
                  121
                ]
              },
              {
                "kind": "account",
                "path": "authority"
              }
            ]
          }
        }
      ],
      "args": [
        {
          "name": "config",
          "type": {
            "defined": {
              "name": "policyConfig"
            }
          }
        }
      ]
    },
    {
      "name": "witnessSnapshot",
      "docs": [
        "Who: any key; the record counts only under policies that name it as a witness. Records (or refreshes) that target_id had snapshot_root at this slot, on the witness's word. The payer may be another key."
      ],
      "discriminator": [
        75,
        76,
        178,
        113,
        155,
        158,
        165,
        61
      ],
      "accounts": [
        {
          "name": "witness",
          "writable": true,
          "signer": true
        },
        {
          "name": "payer",
          "writable": true,
          "signer": true
        },
        {
          "name": "witnessedSnapshot",
          "writable": true,
          "pda": {
            "seeds": [
              {
                "kind": "const",
                "value": [
                  115,
                  110,
                  97,
                  112,
                  115,
                  104,
                  111,
                  116
                ]
              },
              {
                "kind": "account",
                "path": "witness"
              },
              {
                "kind": "arg",
                "path": "targetId"
              },
              {
                "kind": "arg",
                "path": "snapshotRoot"
              }
            ]
          }
        },
        {
          "name": "systemProgram",
          "address": "11111111111111111111111111111111"
        }
      ],
      "args": [
        {
          "name": "targetId",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "snapshotRoot",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        }
      ]
    },
    {
      "name": "writeBuffer",
      "discriminator": [
        164,
        194,
        69,
        154,
        75,
        169,
        228,
        85
      ],
      "accounts": [
        {
          "name": "uploader",
          "signer": true
        },
        {
          "name": "buffer",
          "writable": true
        }
      ],
      "args": [
        {
          "name": "planHash",
          "type": {
            "array": [
              "u8",
              32
            ]
          }
        },
        {
          "name": "offset",
          "type": "u32"
        },
        {
          "name": "data",
          "type": "bytes"
        }
      ]
    }
  ],
  "accounts": [
    {
      "name": "attestation",
      "discriminator": [
        152,
        125,
        183,
        86,
        36,
        146,
        121,
        73
      ]
    },
    {
      "name": "buffer",
      "discriminator": [
        115,
        5,
        212,
        192,
        85,
        30,
        46,
        41
      ]
    },
    {
      "name": "planMarker",
      "discriminator": [
        155,
        136,
        246,
        159,
        165,
        33,
        21,
        170
      ]
    },
    {
      "name": "policy",
      "discriminator": [
        222,
        135,
        7,
        163,
        235,
        177,
        33,
        68
      ]
    },
    {
      "name": "receipt",
      "discriminator": [
        39,
        154,
        73,
        106,
        80,
        102,
        145,
        153
      ]
    },
    {
      "name": "relocation",
      "discriminator": [
        36,
        56,
        109,
        253,
        38,
        74,
        233,
        205
      ]
    },
    {
      "name": "relocationStore",
      "discriminator": [
        121,
        54,
        140,
        193,
        210,
        70,
        219,
        245
      ]
    },
    {
      "name": "targetChain",
      "discriminator": [
        61,
        33,
        169,
        133,
        18,
        166,
        63,
        98
      ]
    },
    {
      "name": "witnessedSnapshot",
      "discriminator": [
        57,
        134,
        30,
        138,
        88,
        39,
        147,
        156
      ]
    }
  ],
  "events": [
    {
      "name": "applyRecorded",
      "discriminator": [
        208,
        74,
        242,
        240,
        100,
        236,
        128,
        235
      ]
    },
    {
      "name": "attestationRecorded",
      "discriminator": [
        207,
        97,
        52,
        58,
        217,
        238,
        97,
        21
      ]
    },
    {
      "name": "attestationRevoked",
      "discriminator": [
        47,
        106,
        65,
        238,
        200,
        127,
        163,
        50
      ]
    },
    {
      "name": "policyInitialized",
      "discriminator": [
        102,
        184,
        59,
        178,
        235,
        69,
        251,
        181
      ]
    },
    {
      "name": "policyUpdated",
      "discriminator": [
        225,
        112,
        112,
        67,
        95,
        236,
        245,
        161
      ]
    },
    {
      "name": "snapshotWitnessed",
      "discriminator": [
        252,
        16,
        171,
        131,
        190,
        51,
        140,
        12
      ]
    }
  ],
  "errors": [
    {
      "code": 6000,
      "name": "malformedInstruction",
      "msg": "instruction data does not decode as the declared layout"
    },
    {
      "code": 6001,
      "name": "unknownInstruction",
      "msg": "unknown instruction discriminator"
    },
    {
      "code": 6002,
      "name": "writeInExecutableRegion",
      "msg": "write lands in an executable region (W^X policy)"
    },
    {
      "code": 6003,
      "name": "writeOutsideRegions",
      "msg": "write is not contained in any region of the table"
    },
    {
      "code": 6004,
      "name": "writeToReadOnlyRegion",
      "msg": "write lands in a region the table does not mark writable"
    },
    {
      "code": 6005,
      "name": "overlappingWrites",
      "msg": "two writes overlap"
    },
    {
      "code": 6006,
      "name": "unsortedWrites",
      "msg": "writes are not in ascending address order"
    },
    {
      "code": 6007,
      "name": "planTooManyBytes",
      "msg": "plan writes more bytes than the policy allows"
    },
    {
      "code": 6008,
      "name": "planTooManyWrites",
      "msg": "plan has more writes than the policy allows"
    },
    {
      "code": 6009,
      "name": "writeLengthMismatch",
      "msg": "a write's old and new bytes differ in length"
    },
    {
      "code": 6010,
      "name": "emptyWrite",
      "msg": "a write has no bytes"
    },
    {
      "code": 6011,
      "name": "invalidRegionTable",
      "msg": "region table is not sorted, non-empty and non-overlapping"
    },
    {
      "code": 6012,
      "name": "addressOverflow",
      "msg": "a write or region wraps past the end of the address space"
    },
    {
      "code": 6013,
      "name": "emptyPlan",
      "msg": "a plan must contain at least one write"
    },
    {
      "code": 6014,
      "name": "missingSigner",
      "msg": "a required signer did not sign"
    },
    {
      "code": 6015,
      "name": "unauthorized",
      "msg": "signer is not the policy authority"
    },
    {
      "code": 6016,
      "name": "accountNotWritable",
      "msg": "an account that must be writable is not"
    },
    {
      "code": 6017,
      "name": "wrongAccountOwner",
      "msg": "account is not owned by the expected program"
    },
    {
      "code": 6018,
      "name": "accountDiscriminatorMismatch",
      "msg": "account data has the wrong discriminator or size"
    },
    {
      "code": 6019,
      "name": "invalidPda",
      "msg": "account address is not the expected program-derived address"
    },
    {
      "code": 6020,
      "name": "alreadyInitialized",
      "msg": "account is already initialized"
    },
    {
      "code": 6021,
      "name": "policyMismatch",
      "msg": "account belongs to a different policy or target"
    },
    {
      "code": 6022,
      "name": "wrongSystemProgram",
      "msg": "the system program account is not the system program"
    },
    {
      "code": 6023,
      "name": "invalidPolicyRules",
      "msg": "policy rules are out of range"
    },
    {
      "code": 6024,
      "name": "noOpWrite",
      "msg": "a write's new bytes equal its old bytes"
    },
    {
      "code": 6025,
      "name": "invalidPageProof",
      "msg": "a page's Merkle proof does not lead to the snapshot's page root"
    },
    {
      "code": 6026,
      "name": "invalidRegionProof",
      "msg": "a region's Merkle proof does not lead to the snapshot's region root"
    },
    {
      "code": 6027,
      "name": "snapshotRootMismatch",
      "msg": "the plan's snapshot root is not the hash of the proven sub-roots"
    },
    {
      "code": 6028,
      "name": "missingPageProof",
      "msg": "a write touches a page the evidence does not prove"
    },
    {
      "code": 6029,
      "name": "oldBytesMismatch",
      "msg": "a write's old bytes differ from the snapshot's bytes at that address"
    },
    {
      "code": 6030,
      "name": "missingRegionProof",
      "msg": "every region of the table needs exactly one proof"
    },
    {
      "code": 6031,
      "name": "unsortedPages",
      "msg": "page proofs are not page-aligned and in ascending order"
    },
    {
      "code": 6032,
      "name": "planHashMismatch",
      "msg": "the uploaded plan does not hash to the plan hash given"
    },
    {
      "code": 6033,
      "name": "planAlreadyAttested",
      "msg": "this plan is already attested for this target"
    },
    {
      "code": 6034,
      "name": "bufferOutOfBounds",
      "msg": "buffer write lies outside the buffer"
    },
    {
      "code": 6035,
      "name": "signerNotAllowed",
      "msg": "signer is neither the policy authority nor an allowed host signer"
    },
    {
      "code": 6036,
      "name": "tooManySigners",
      "msg": "a policy holds at most 4 host signers"
    },
    {
      "code": 6037,
      "name": "attestationRevoked",
      "msg": "the attestation was revoked"
    },
    {
      "code": 6038,
      "name": "attestationNotFound",
      "msg": "the attestation account does not match the target chain and sequence"
    },
    {
      "code": 6039,
      "name": "receiptAlreadyRecorded",
      "msg": "an apply receipt is already recorded for this attestation"
    },
    {
      "code": 6040,
      "name": "writeOutsideAllowedRanges",
      "msg": "write is not inside any address range the policy allows (relative to a symbol)"
    },
    {
      "code": 6041,
      "name": "missingSymbolProof",
      "msg": "a symbol the policy's rules name has no proof in the evidence"
    },
    {
      "code": 6042,
      "name": "invalidSymbolProof",
      "msg": "a symbol's Merkle proof does not lead to the snapshot's symbol root, or proofs are not in ascending key order"
    },
    {
      "code": 6043,
      "name": "partialFieldWrite",
      "msg": "a write covers only part of a typed field"
    },
    {
      "code": 6044,
      "name": "fieldValueOutOfBounds",
      "msg": "a typed field's new value is outside the policy's bounds"
    },
    {
      "code": 6045,
      "name": "pointerTargetUnreadable",
      "msg": "a pointer field's new value does not point into a readable region of the plan's proven regions"
    },
    {
      "code": 6046,
      "name": "tooManySymbolRules",
      "msg": "a policy holds at most 8 symbol rules"
    },
    {
      "code": 6047,
      "name": "policyClosed",
      "msg": "the policy is closed"
    },
    {
      "code": 6048,
      "name": "attestationBlocked",
      "msg": "the attestation was made before its policy was last closed"
    },
    {
      "code": 6049,
      "name": "receiptNotBySigner",
      "msg": "only the attestation's signer or the policy authority may record its receipt"
    },
    {
      "code": 6050,
      "name": "unsupportedVersion",
      "msg": "the account's layout version is not one this program reads"
    },
    {
      "code": 6051,
      "name": "notEnoughWitnesses",
      "msg": "the plan's snapshot root is witnessed by fewer of the policy's witnesses than it requires"
    },
    {
      "code": 6052,
      "name": "witnessNotInPolicy",
      "msg": "a witnessed snapshot was recorded by a key the policy does not name as a witness"
    },
    {
      "code": 6053,
      "name": "duplicateWitness",
      "msg": "the same witness is cited twice"
    },
    {
      "code": 6054,
      "name": "witnessedRootMismatch",
      "msg": "a witnessed snapshot names another target or snapshot root than the plan"
    },
    {
      "code": 6055,
      "name": "staleSnapshot",
      "msg": "the witnessed snapshot is older than the policy's max_snapshot_age"
    },
    {
      "code": 6056,
      "name": "invalidWitnessSet",
      "msg": "policy witnesses: 1 to 4 distinct keys that are neither the authority nor a host signer, a threshold from 1 to their number, and a max_snapshot_age of at least 1 slot"
    },
    {
      "code": 6057,
      "name": "modelHashMismatch",
      "msg": "the plan was solved with other MiniZinc models than the policy pins (model_hash)"
    },
    {
      "code": 6058,
      "name": "relocationNotAllowed",
      "msg": "the policy allows no relocations (its max_moves is 0)"
    },
    {
      "code": 6059,
      "name": "planTooManyMoves",
      "msg": "the relocation moves more objects than the policy allows"
    },
    {
      "code": 6060,
      "name": "invalidRelocation",
      "msg": "relocation slots are not ascending, disjoint and 8-byte aligned and sized, or a slot's from or to is out of range, itself, or a slot of another size"
    },
    {
      "code": 6061,
      "name": "relocationNotAPermutation",
      "msg": "the relocation is not a permutation: two objects go to one slot, or one slot's object goes nowhere"
    },
    {
      "code": 6062,
      "name": "movedBytesMismatch",
      "msg": "a moved object's new bytes are not its old bytes with every pointer to a moved object moved"
    },
    {
      "code": 6063,
      "name": "pointerNotMoved",
      "msg": "a write of a relocation is neither a slot's new bytes nor an 8-byte pointer rewritten to the move of its old value"
    },
    {
      "code": 6064,
      "name": "relocationStreamOutOfOrder",
      "msg": "a relocation part is out of order: the slot table is not all appended, the last part was already checked, or the part holds a write or a slot outside its range"
    },
    {
      "code": 6065,
      "name": "relocationPartMismatch",
      "msg": "a relocation part names another target, snapshot root, models or region table than its relocation, or carries slots of its own"
    },
    {
      "code": 6066,
      "name": "relocationUnfinished",
      "msg": "the relocation's parts do not reach every slot and the end of the address space yet"
    },
    {
      "code": 6067,
      "name": "relocationStoreMismatch",
      "msg": "the relocation's stores are not the ones it was opened with, in order, sized for its slots"
    },
    {
      "code": 6068,
      "name": "streamedSlotTooLong",
      "msg": "a slot of a relocation checked in parts is longer than 512 bytes"
    },
    {
      "code": 6069,
      "name": "slotsNotNext",
      "msg": "append_slots does not start at the relocation's count of appended slots: it ran before an earlier append, or again"
    }
  ],
  "types": [
    {
      "name": "applyRecorded",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "attestation",
            "type": "pubkey"
          },
          {
            "name": "signer",
            "type": "pubkey"
          },
          {
            "name": "seq",
            "type": "u64"
          },
          {
            "name": "slot",
            "type": "u64"
          },
          {
            "name": "outcome",
            "type": "u8"
          },
          {
            "name": "readbackHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          }
        ]
      }
    },
    {
      "name": "attestation",
      "docs": [
        "One recorded decision. policy_revision and policy_hash name the policy configuration that judged it; witnesses (the first witness_count, in the order cited) are the snapshot witnesses whose records of snapshot_root counted, witness_slots their records' slots then; the link hash commits to all of them."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "targetId",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "policy",
            "type": "pubkey"
          },
          {
            "name": "signer",
            "type": "pubkey"
          },
          {
            "name": "seq",
            "type": "u64"
          },
          {
            "name": "slot",
            "type": "u64"
          },
          {
            "name": "snapshotRoot",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "regionTableHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "planHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "prevHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "hash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "writeCount",
            "type": "u32"
          },
          {
            "name": "byteCount",
            "type": "u32"
          },
          {
            "name": "policyRevision",
            "type": "u32"
          },
          {
            "name": "policyHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "witnessCount",
            "type": "u8"
          },
          {
            "name": "witnesses",
            "type": {
              "array": [
                "pubkey",
                4
              ]
            }
          },
          {
            "name": "witnessSlots",
            "type": {
              "array": [
                "u64",
                4
              ]
            }
          },
          {
            "name": "revoked",
            "type": "bool"
          },
          {
            "name": "bump",
            "type": "u8"
          }
        ]
      }
    },
    {
      "name": "attestationRecorded",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "targetId",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "policy",
            "type": "pubkey"
          },
          {
            "name": "signer",
            "type": "pubkey"
          },
          {
            "name": "seq",
            "type": "u64"
          },
          {
            "name": "slot",
            "type": "u64"
          },
          {
            "name": "snapshotRoot",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "regionTableHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "planHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "prevHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "hash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "writeCount",
            "type": "u32"
          },
          {
            "name": "byteCount",
            "type": "u32"
          },
          {
            "name": "policyRevision",
            "type": "u32"
          },
          {
            "name": "policyHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "witnessCount",
            "type": "u8"
          },
          {
            "name": "witnesses",
            "type": {
              "array": [
                "pubkey",
                4
              ]
            }
          },
          {
            "name": "witnessSlots",
            "type": {
              "array": [
                "u64",
                4
              ]
            }
          }
        ]
      }
    },
    {
      "name": "attestationRevoked",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "attestation",
            "type": "pubkey"
          },
          {
            "name": "seq",
            "type": "u64"
          }
        ]
      }
    },
    {
      "name": "buffer",
      "docs": [
        "Upload area: PlanCore followed by Evidence (see the README's wire format)."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "authority",
            "type": "pubkey"
          },
          {
            "name": "planHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "version",
            "type": "u8"
          },
          {
            "name": "data",
            "type": "bytes"
          }
        ]
      }
    },
    {
      "name": "planCore",
      "docs": [
        "What a plan hash covers: sha256(\"memzinc/plan/v1\" || borsh(PlanCore)). model_hash: SHA-256 of the MiniZinc models the plan was solved with; a policy whose model_hash is not zero refuses a plan that names another (ModelHashMismatch). slots: empty but for a relocation, whose writes are then the slots' new bytes and the pointers moved with them (see Slot)."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "targetId",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "snapshotRoot",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "modelHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "regions",
            "type": {
              "vec": {
                "defined": {
                  "name": "region"
                }
              }
            }
          },
          {
            "name": "writes",
            "type": {
              "vec": {
                "defined": {
                  "name": "planWrite"
                }
              }
            }
          },
          {
            "name": "slots",
            "type": {
              "vec": {
                "defined": {
                  "name": "slot"
                }
              }
            }
          }
        ]
      }
    },
    {
      "name": "planMarker",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "seq",
            "type": "u64"
          },
          {
            "name": "bump",
            "type": "u8"
          }
        ]
      }
    },
    {
      "name": "planWrite",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "address",
            "type": "u64"
          },
          {
            "name": "old",
            "type": "bytes"
          },
          {
            "name": "new",
            "type": "bytes"
          }
        ]
      }
    },
    {
      "name": "policy",
      "docs": [
        "A policy. Closing marks it closed and keeps the account, so initialize_policy reopens it at the next revision (never 0 again) and attestations made before the close stay blocked (opened_revision). config_hash = sha256(\"memzinc/policy/v1\" || rules || u8 signer count || signers || u8 witness count || witnesses || witness_threshold || u64 max_snapshot_age || model_hash || verifier_hash || u8 symbol rule count || symbol rules)."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "authority",
            "type": "pubkey"
          },
          {
            "name": "rules",
            "type": {
              "defined": {
                "name": "policyRules"
              }
            }
          },
          {
            "name": "signerCount",
            "type": "u8"
          },
          {
            "name": "signers",
            "type": {
              "array": [
                "pubkey",
                4
              ]
            }
          },
          {
            "name": "witnessCount",
            "type": "u8"
          },
          {
            "name": "witnesses",
            "type": {
              "array": [
                "pubkey",
                4
              ]
            }
          },
          {
            "name": "witnessThreshold",
            "type": "u8"
          },
          {
            "name": "maxSnapshotAge",
            "type": "u64"
          },
          {
            "name": "modelHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "verifierHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "revision",
            "type": "u32"
          },
          {
            "name": "bump",
            "type": "u8"
          },
          {
            "name": "openedRevision",
            "type": "u32"
          },
          {
            "name": "closed",
            "type": "bool"
          },
          {
            "name": "configHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "symbolRuleCount",
            "type": "u8"
          },
          {
            "name": "symbolRules",
            "type": {
              "array": [
                {
                  "defined": {
                    "name": "symbolRule"
                  }
                },
                8
              ]
            }
          }
        ]
      }
    },
    {
      "name": "policyConfig",
      "docs": [
        "witnesses: 1 to 4 snapshot witnesses (neither the authority nor a host signer); attest wants the plan's snapshot root recorded by witness_threshold of them within max_snapshot_age slots."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "rules",
            "type": {
              "defined": {
                "name": "policyRules"
              }
            }
          },
          {
            "name": "signers",
            "type": {
              "vec": "pubkey"
            }
          },
          {
            "name": "witnesses",
            "type": {
              "vec": "pubkey"
            }
          },
          {
            "name": "witnessThreshold",
            "type": "u8"
          },
          {
            "name": "maxSnapshotAge",
            "type": "u64"
          },
          {
            "name": "modelHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "verifierHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "symbolRules",
            "type": {
              "vec": {
                "defined": {
                  "name": "symbolRule"
                }
              }
            }
          }
        ]
      }
    },
    {
      "name": "policyInitialized",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "authority",
            "type": "pubkey"
          },
          {
            "name": "rules",
            "type": {
              "defined": {
                "name": "policyRules"
              }
            }
          }
        ]
      }
    },
    {
      "name": "policyRules",
      "docs": [
        "max_moves: the most objects one relocation may move; 0 refuses relocations (RelocationNotAllowed)."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "wx",
            "type": "bool"
          },
          {
            "name": "maxBytes",
            "type": "u32"
          },
          {
            "name": "maxWrites",
            "type": "u32"
          },
          {
            "name": "maxMoves",
            "type": "u32"
          }
        ]
      }
    },
    {
      "name": "policyUpdated",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "authority",
            "type": "pubkey"
          },
          {
            "name": "revision",
            "type": "u32"
          }
        ]
      }
    },
    {
      "name": "receipt",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "attestation",
            "type": "pubkey"
          },
          {
            "name": "signer",
            "type": "pubkey"
          },
          {
            "name": "seq",
            "type": "u64"
          },
          {
            "name": "slot",
            "type": "u64"
          },
          {
            "name": "outcome",
            "type": "u8"
          },
          {
            "name": "readbackHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "bump",
            "type": "u8"
          }
        ]
      }
    },
    {
      "name": "region",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "start",
            "type": "u64"
          },
          {
            "name": "end",
            "type": "u64"
          },
          {
            "name": "flags",
            "type": "u8"
          }
        ]
      }
    },
    {
      "name": "relocation",
      "docs": [
        "A relocation checked in parts: who opened it, under which policy revision, where its records are, and what its parts have proven so far (relocation_stream::StreamState)."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "authority",
            "type": "pubkey"
          },
          {
            "name": "policy",
            "type": "pubkey"
          },
          {
            "name": "policyRevision",
            "type": "u32"
          },
          {
            "name": "openedSlot",
            "type": "u64"
          },
          {
            "name": "perStore",
            "type": "u32"
          },
          {
            "name": "storeCount",
            "type": "u8"
          },
          {
            "name": "stores",
            "type": {
              "array": [
                "pubkey",
                6
              ]
            }
          },
          {
            "name": "targetId",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "snapshotRoot",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "modelHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "regionTableHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "slotCount",
            "type": "u32"
          },
          {
            "name": "appended",
            "type": "u32"
          },
          {
            "name": "lastEnd",
            "type": "u64"
          },
          {
            "name": "slotDigest",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "nextSlot",
            "type": "u32"
          },
          {
            "name": "nextAddress",
            "type": "u64"
          },
          {
            "name": "done",
            "type": "bool"
          },
          {
            "name": "writeCount",
            "type": "u64"
          },
          {
            "name": "writeBytes",
            "type": "u64"
          },
          {
            "name": "writeDigest",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "unbalanced",
            "type": "u32"
          }
        ]
      }
    },
    {
      "name": "relocationStore",
      "docs": [
        "The head of a store of a relocation's records; per_store records of 49 bytes (stream slot, taken, balance) follow it."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "relocation",
            "type": "pubkey"
          },
          {
            "name": "authority",
            "type": "pubkey"
          }
        ]
      }
    },
    {
      "name": "slot",
      "docs": [
        "One slot of a relocation: the object-sized range [address, address + len), 8-byte aligned and sized; the object in slot number `from` moves here and this slot's object to slot number `to` (slots ascend by address; `from` and `to` are each other's inverse permutations)."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "address",
            "type": "u64"
          },
          {
            "name": "len",
            "type": "u32"
          },
          {
            "name": "from",
            "type": "u32"
          },
          {
            "name": "to",
            "type": "u32"
          }
        ]
      }
    },
    {
      "name": "snapshotWitnessed",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "witness",
            "type": "pubkey"
          },
          {
            "name": "targetId",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "snapshotRoot",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "slot",
            "type": "u64"
          }
        ]
      }
    },
    {
      "name": "symbolRule",
      "docs": [
        "An address range relative to a symbol, [symbol + start, symbol + end), where the policy allows writes. symbol = sha256(\"memzinc/symbol-key/v1\" || u32_le(len(module)) || module || name); its runtime address is proven against the snapshot's symbol tree. kind: 0 any bytes, 1 unsigned integer in [min, max], 2 signed integer in [min as i64, max as i64] (width 1, 2, 4 or 8), 3 pointer (8 bytes) into a readable region of the plan's proven regions."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "symbol",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "start",
            "type": "u64"
          },
          {
            "name": "end",
            "type": "u64"
          },
          {
            "name": "kind",
            "type": "u8"
          },
          {
            "name": "min",
            "type": "u64"
          },
          {
            "name": "max",
            "type": "u64"
          }
        ]
      }
    },
    {
      "name": "targetChain",
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "policy",
            "type": "pubkey"
          },
          {
            "name": "targetId",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "nextSeq",
            "type": "u64"
          },
          {
            "name": "headHash",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "bump",
            "type": "u8"
          }
        ]
      }
    },
    {
      "name": "witnessedSnapshot",
      "docs": [
        "A snapshot witness's word: the process it calls target_id had snapshot_root at slot (it took that snapshot from the live process itself)."
      ],
      "type": {
        "kind": "struct",
        "fields": [
          {
            "name": "witness",
            "type": "pubkey"
          },
          {
            "name": "targetId",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "snapshotRoot",
            "type": {
              "array": [
                "u8",
                32
              ]
            }
          },
          {
            "name": "slot",
            "type": "u64"
          },
          {
            "name": "bump",
            "type": "u8"
          }
        ]
      }
    }
  ]
};
