//! A policy's symbol rules as operators write them: address ranges and typed fields relative
//! to a module and a symbol (`memzinc policy init --allow/--field/--pointer`), so one policy
//! holds for every run of a target whatever ASLR chose. The rules themselves, their encoding
//! and their check are `memzinc_verifier::wire::SymbolRule` and `rules::check_symbol_rules`.
//!
//! ```text
//! --allow   MODULE:SYMBOL+START..END          any bytes in [SYMBOL+START, SYMBOL+END)
//! --field   MODULE:SYMBOL+OFFSET:TYPE=MIN..MAX  TYPE u8..u64 or i8..i64, the value in [MIN, MAX]
//! --pointer MODULE:SYMBOL+OFFSET               8 bytes pointing into a readable proven region
//! ```
//!
//! MODULE is the file name of the module's mapping (`healme`, `libc.so.6`), see
//! `snapshot::symbol_module`. Numbers are decimal or `0x` hex.

use memzinc_verifier::accounts::PolicyConfig;
use memzinc_verifier::hash::{symbol_key, Hash};
use memzinc_verifier::wire::{field_kind, SymbolRule};
use serde::Serialize;

use memzinc::base::Sha2;
use memzinc::base::{Error, Result};

fn usage(flag: &str, spec: &str, why: &str) -> Error {
    Error::Usage(format!("--{flag} {spec:?}: {why}"))
}

fn number<T: std::str::FromStr + TryFrom<i128>>(text: &str) -> Option<T> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x") {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i128>().ok()?,
    };
    T::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// `MODULE:SYMBOL+REST` → (symbol key, REST); the offset part is optional (`+0`).
fn symbol_part<'a>(flag: &str, spec: &'a str) -> Result<(Hash, &'a str)> {
    let (module, rest) = spec
        .split_once(':')
        .ok_or_else(|| usage(flag, spec, "expected MODULE:SYMBOL"))?;
    let (name, rest) = rest.split_once('+').unwrap_or((rest, ""));
    if module.is_empty() || name.is_empty() {
        return Err(usage(flag, spec, "expected MODULE:SYMBOL"));
    }
    Ok((symbol_key::<Sha2>(module.as_bytes(), name.as_bytes()), rest))
}

fn validated(flag: &str, spec: &str, rule: SymbolRule) -> Result<SymbolRule> {
    rule.validate().map_err(|e| usage(flag, spec, e.message()))?;
    Ok(rule)
}

/// `--allow MODULE:SYMBOL+START..END`
pub fn parse_allow(spec: &str) -> Result<SymbolRule> {
    let (symbol, rest) = symbol_part("allow", spec)?;
    let (start, end) = rest
        .split_once("..")
        .and_then(|(s, e)| Some((number::<u64>(s)?, number::<u64>(e)?)))
        .ok_or_else(|| usage("allow", spec, "expected MODULE:SYMBOL+START..END"))?;
    validated(
        "allow",
        spec,
        SymbolRule {
            symbol,
            start,
            end,
            kind: field_kind::BYTES,
            min: 0,
            max: 0,
        },
    )
}

/// `--field MODULE:SYMBOL+OFFSET:TYPE=MIN..MAX`
pub fn parse_field(spec: &str) -> Result<SymbolRule> {
    let (symbol, rest) = symbol_part("field", spec)?;
    let bad = || {
        usage(
            "field",
            spec,
            "expected MODULE:SYMBOL+OFFSET:TYPE=MIN..MAX (TYPE u8..u64, i8..i64)",
        )
    };
    let (offset, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (ty, bounds) = rest.split_once('=').ok_or_else(bad)?;
    let (min, max) = bounds.split_once("..").ok_or_else(bad)?;
    let offset = number::<u64>(offset).ok_or_else(bad)?;
    let (signed, bits) = match ty.split_at_checked(1) {
        Some(("u", bits)) => (false, bits),
        Some(("i", bits)) => (true, bits),
        _ => return Err(bad()),
    };
    let width = match bits {
        "8" => 1,
        "16" => 2,
        "32" => 4,
        "64" => 8,
        _ => return Err(bad()),
    };
    let (kind, min, max) = if signed {
        let bits = 8 * width as u32;
        let (lo, hi) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
        let min = number::<i64>(min).filter(|v| (lo..=hi).contains(&(*v as i128)));
        let max = number::<i64>(max).filter(|v| (lo..=hi).contains(&(*v as i128)));
        let (min, max) = min
            .zip(max)
            .ok_or_else(|| usage("field", spec, "bounds do not fit the type"))?;
        (field_kind::SIGNED, min as u64, max as u64)
    } else {
        let top = if width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        let min = number::<u64>(min).filter(|v| *v <= top);
        let max = number::<u64>(max).filter(|v| *v <= top);
        let (min, max) = min
            .zip(max)
            .ok_or_else(|| usage("field", spec, "bounds do not fit the type"))?;
        (field_kind::UNSIGNED, min, max)
    };
    let end = offset.checked_add(width).ok_or_else(bad)?;
    validated(
        "field",
        spec,
        SymbolRule {
            symbol,
            start: offset,
            end,
            kind,
            min,
            max,
        },
    )
}

/// `--pointer MODULE:SYMBOL+OFFSET`
pub fn parse_pointer(spec: &str) -> Result<SymbolRule> {
    let (symbol, rest) = symbol_part("pointer", spec)?;
    let offset = if rest.is_empty() { Some(0) } else { number::<u64>(rest) }
        .ok_or_else(|| usage("pointer", spec, "expected MODULE:SYMBOL+OFFSET"))?;
    let end = offset
        .checked_add(8)
        .ok_or_else(|| usage("pointer", spec, "offset too large"))?;
    validated(
        "pointer",
        spec,
        SymbolRule {
            symbol,
            start: offset,
            end,
            kind: field_kind::POINTER,
            min: 0,
            max: 0,
        },
    )
}

/// The symbols a policy's rules name: what evidence must prove under it.
pub fn symbol_keys(config: &PolicyConfig) -> Vec<Hash> {
    let mut keys: Vec<Hash> = config.symbol_rules.iter().map(|r| r.symbol).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Evidence for `plan` from its snapshot with proofs of every symbol `config`'s rules name
/// (what `attest --snapshot` uploads). The snapshot must be the plan's.
pub fn evidence_under(
    snapshot: &memzinc::describe::Snapshot,
    plan: &memzinc_verifier::plan::PatchPlan,
    config: Option<&PolicyConfig>,
) -> Result<memzinc_verifier::plan::Evidence> {
    if snapshot.root() != plan.snapshot_root {
        return Err(Error::Usage(format!(
            "{} is not the plan's snapshot (root {}, the plan names {})",
            snapshot.path.display(),
            snapshot.meta.root,
            hex::encode(plan.snapshot_root)
        )));
    }
    let keys = config.map(symbol_keys).unwrap_or_default();
    snapshot.evidence_with_symbols(plan, &keys)
}

/// A symbol rule as `memzinc policy show` prints it (the symbol by its key: names are hashed).
#[derive(Serialize)]
pub struct ShownRule {
    pub symbol_key: String,
    pub start: u64,
    pub end: u64,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i128>,
}

pub fn show_rules(config: &PolicyConfig) -> Vec<ShownRule> {
    config
        .symbol_rules
        .iter()
        .map(|r| {
            let (kind, bounds) = match r.kind {
                field_kind::UNSIGNED => ("unsigned", Some((r.min as i128, r.max as i128))),
                field_kind::SIGNED => ("signed", Some((r.min as i64 as i128, r.max as i64 as i128))),
                field_kind::POINTER => ("pointer", None),
                _ => ("bytes", None),
            };
            ShownRule {
                symbol_key: hex::encode(r.symbol),
                start: r.start,
                end: r.end,
                kind,
                min: bounds.map(|b| b.0),
                max: bounds.map(|b| b.1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_into_rules_and_bad_ones_say_why() {
        let key = symbol_key::<Sha2>(b"healme", b"STATE");
        let allow = parse_allow("healme:STATE+0x10..64").unwrap();
        assert_eq!(
            (allow.symbol, allow.start, allow.end, allow.kind),
            (key, 16, 64, field_kind::BYTES)
        );
        let field = parse_field("healme:STATE+8:i32=-5..0x10").unwrap();
        assert_eq!(
            (field.start, field.end, field.kind, field.min as i64, field.max),
            (8, 12, field_kind::SIGNED, -5, 16)
        );
        let field = parse_field("healme:STATE+2:u8=1..255").unwrap();
        assert_eq!(
            (field.end, field.kind, field.min, field.max),
            (3, field_kind::UNSIGNED, 1, 255)
        );
        let pointer = parse_pointer("libc.so.6:environ").unwrap();
        assert_eq!((pointer.start, pointer.end, pointer.kind), (0, 8, field_kind::POINTER));
        for bad in [
            parse_allow("STATE+0..8"),
            parse_allow("healme:STATE+8..8"),
            parse_allow("healme:STATE"),
            parse_field("healme:STATE+0:u8=0..256"),
            parse_field("healme:STATE+0:i8=-129..0"),
            parse_field("healme:STATE+0:u24=0..1"),
            parse_field("healme:STATE+0:u32=5..1"),
            parse_pointer("healme:STATE+x"),
        ] {
            assert!(matches!(bad, Err(Error::Usage(_))), "{bad:?}");
        }
    }
}
