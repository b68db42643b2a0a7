//! The outputs of a `.drv` file, read from its ATerm text.
//!
//! ```text
//! Derive([("dev","/nix/store/yqcx…-multi-dev","",""),("out","/nix/store/2a4f…-multi","","")],[…],…)
//! ```
//!
//! Only the first list (output name, path, hash algorithm, hash) is read. Reading the file
//! directly works on every Nix version and needs no experimental features. Content-addressed
//! outputs have an empty path until built; those come back as `None`.

use tally_core::StorePath;

/// One output of a derivation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The output's name (`out`, `dev`, …).
    pub name: String,
    /// Its path, if the derivation fixes it (input-addressed or fixed-output).
    pub path: Option<StorePath>,
}

/// Why a derivation's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a derivation ({0})")]
pub struct DerivationError(pub String);

/// The outputs of a derivation, in the order the file lists them.
pub fn outputs(text: &str) -> Result<Vec<Output>, DerivationError> {
    let err = |m: &str| DerivationError(m.to_owned());
    let mut p = Parser {
        rest: text
            .strip_prefix("Derive([")
            .ok_or_else(|| err("no `Derive([` prefix"))?,
    };
    let mut out = Vec::new();
    if p.eat(']') {
        return Ok(out);
    }
    loop {
        p.expect('(')?;
        let name = p.string()?;
        p.expect(',')?;
        let path = p.string()?;
        p.expect(',')?;
        p.string()?;
        p.expect(',')?;
        p.string()?;
        p.expect(')')?;
        let path = if path.is_empty() {
            None
        } else {
            Some(StorePath::parse(&path).map_err(|e| DerivationError(e.to_string()))?)
        };
        out.push(Output { name, path });
        if p.eat(']') {
            return Ok(out);
        }
        p.expect(',')?;
    }
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), DerivationError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(DerivationError(format!("expected {c:?}")))
        }
    }

    fn string(&mut self) -> Result<String, DerivationError> {
        self.expect('"')?;
        let mut s = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(s);
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some(c) => s.push(c),
                    None => break,
                },
                c => s.push(c),
            }
        }
        Err(DerivationError("unterminated string".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_outputs_as_nix_writes_them() {
        // From a real Nix 2.8 build (multi.nix with outputs out, dev, lib).
        let drv = r#"Derive([("dev","/nix/store/yqcx118w11nxjfr71kl80h7h0b1cv07q-multi-dev","",""),("lib","/nix/store/76ad9g8kg177c09lzrdqz74z289mc821-multi-lib","",""),("out","/nix/store/2a4fs22r06bpgjradbcva3998v8ljgdv-multi","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo \"out\" > $out"],[("builder","/bin/sh")])"#;
        let outs = outputs(drv).unwrap();
        let names: Vec<_> = outs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["dev", "lib", "out"]);
        assert_eq!(
            outs[2].path.as_ref().unwrap().to_string(),
            "/nix/store/2a4fs22r06bpgjradbcva3998v8ljgdv-multi"
        );
        let ca = r#"Derive([("out","","r:sha256","")],[],[],"x","/bin/sh",[],[])"#;
        assert_eq!(
            outputs(ca).unwrap(),
            [Output {
                name: "out".into(),
                path: None
            }]
        );
        assert!(outputs("Derive([(\"out\"").is_err());
        assert!(outputs("not a drv").is_err());
    }
}
