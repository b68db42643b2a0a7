//! C2SP tlog-proof (`c2sp.org/tlog-proof@v1`): an entry, its inclusion proof and the
//! (cosigned) checkpoint it is proven against, as one offline-verifiable text.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra dGFsbHkvYXR0ZXN0YXRpb24vdjEKZHJ2IC9uaXgvc3RvcmUv…
//! index 3
//! 1G8pXc6pVLqD2aB5D7tW6z3pJX4rA3mB1S2x7bZ3kVU=
//! mPq0cA8wI5qLr4bJ0v6gq3Hh9kI2sQdIq1bN2uD0xAg=
//!
//! builder1.example.org/tally
//! 5
//! 9V0Wq3yuI1N6PzZbA5M0n2mB0l5RhJ0jP7Z0l6fXx3s=
//! map 2p9r2dV6ZmYdYxMRwIqbP1FoJx8vrZk4g+XWYH0kzbQ=
//!
//! — builder1.example.org/tally Dr5JqZkk3//PsJmV3BX0…
//! — witness1.example/w1 jWbPPwAAAABkGFDL…
//! ```
//!
//! Tally puts the entry itself (the attestation's canonical bytes) in `extra`: its leaf
//! hash is `SHA-256(0x00 ‖ extra)`. `extra` is not trusted: a verifier hashes it, checks the
//! inclusion proof against the checkpoint's root, and only then reads it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::hash::Hash;
use crate::tlog::InclusionProof;

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof. Nothing in it is verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// The opaque extra data: for Tally, the entry's bytes.
    pub extra: Option<Vec<u8>>,
    /// The entry's index.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint, verbatim, with any cosignatures.
    pub checkpoint: String,
}

/// Why a text is not a tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed tlog-proof: {0}")]
pub struct TlogProofError(pub String);

impl TlogProof {
    /// The proof as text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", BASE64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&format!("{h}\n"));
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof.
    pub fn parse(text: &str) -> Result<TlogProof, TlogProofError> {
        let err = |m: &str| TlogProofError(m.to_owned());
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| err("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(HEADER) {
            return Err(err("the first line must be c2sp.org/tlog-proof@v1"));
        }
        let extra = match lines.peek().and_then(|l| l.strip_prefix("extra ")) {
            Some(b64) => {
                let bytes = BASE64
                    .decode(b64)
                    .map_err(|_| err("the extra line is not base64"))?;
                lines.next();
                Some(bytes)
            }
            None => None,
        };
        let index = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .filter(|i| *i == "0" || !i.starts_with('0'))
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| err("expected `index <decimal, no leading zeros>`"))?;
        let hashes = lines
            .map(|l| Hash::from_base64(l).map_err(|_| err(&format!("{l:?} is not a hash"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// The inclusion proof, for a tree of `tree_size` (the checkpoint's).
    pub fn inclusion_proof(&self, tree_size: u64) -> InclusionProof {
        InclusionProof {
            index: self.index,
            tree_size,
            hashes: self.hashes.clone(),
        }
    }
}

/// What a verified tlog-proof shows: this log, at this checkpoint (cosigned by these
/// witnesses), includes this attestation at this index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenInclusion {
    /// The checkpoint.
    pub checkpoint: crate::Checkpoint,
    /// The entry's index.
    pub index: u64,
    /// The attestation.
    pub attestation: crate::Attestation,
    /// The policy witnesses that cosigned the checkpoint, with their timestamps.
    pub cosigned: Vec<(String, u64)>,
}

impl TlogProof {
    /// Checks the proof under `trust` at `now`: the checkpoint signed by a log the policy
    /// lists, the witness quorum, the inclusion of `extra` as a leaf, and that `extra` is an
    /// attestation.
    pub fn verify(
        &self,
        trust: &crate::trust::TrustPolicy,
        now: u64,
    ) -> Result<ProvenInclusion, crate::Error> {
        use crate::answer::AnswerError;
        let unverified = crate::UnverifiedCheckpoint::parse(self.checkpoint.as_bytes())?;
        let log = trust
            .log(unverified.origin())
            .ok_or_else(|| AnswerError::UnknownLog(unverified.origin().to_string()))?;
        let signed = unverified.verify(&log.key)?;
        let witnessed = trust.witnessed(signed.note());
        if !trust.quorum_met(&witnessed, now) {
            return Err(AnswerError::WitnessQuorum {
                size: signed.checkpoint().tree.size,
                quorum: trust.quorum_name().to_owned(),
            }
            .into());
        }
        let checkpoint = signed.checkpoint().clone();
        let extra = self.extra.as_deref().ok_or_else(|| AnswerError::BadEntry {
            index: self.index,
            problem: "no extra line: the entry is missing".into(),
        })?;
        self.inclusion_proof(checkpoint.tree.size)
            .verify(crate::tlog::leaf_hash(extra), &checkpoint.tree)?;
        let attestation = crate::Attestation::decode(extra)?;
        Ok(ProvenInclusion {
            checkpoint,
            index: self.index,
            attestation,
            cosigned: witnessed.cosigned,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_the_spec_example() {
        // The shape of the spec's example (its hashes, and a checkpoint with signatures).
        let spec = "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\nindex 73894\ngSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\nEKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\nRoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\nAHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\nexample.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n— example.com/fancylog hI2DJw==\n";
        let p = TlogProof::parse(spec).unwrap();
        assert_eq!(p.index, 73894);
        assert_eq!(p.hashes.len(), 5);
        assert!(p.checkpoint.starts_with("example.com/fancylog\n109482\n"));
        assert_eq!(p.to_text(), spec);
        // No extra line, index 0, no hashes.
        let bare = TlogProof {
            extra: None,
            index: 0,
            hashes: vec![],
            checkpoint: "x\n1\nAA==\n\n— x AAAA\n".into(),
        };
        assert_eq!(TlogProof::parse(&bare.to_text()).unwrap(), bare);
        for bad in [
            "c2sp.org/tlog-proof@v2\nindex 1\n\nx\n",
            "c2sp.org/tlog-proof@v1\nindex 01\n\nx\n",
            "c2sp.org/tlog-proof@v1\nindex 1\nnot a hash\n\nx\n",
            "c2sp.org/tlog-proof@v1\nindex 1\n",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verification_names_what_fails() {
        use crate::answer::AnswerError;
        use crate::test_log::TestLog;
        use crate::trust::TrustPolicy;
        let mut log = TestLog::new("p.example/log", 7);
        log.push(&crate::sample::attestation(1));
        log.push(&crate::sample::attestation(2));
        let answer = log.answer(&crate::sample::output_path(2).hash());
        let (entry, inclusion) = (answer.entry.unwrap(), answer.inclusion_proof.unwrap());
        let proof = TlogProof {
            extra: Some(entry.data),
            index: entry.index,
            hashes: inclusion.hashes,
            checkpoint: answer.checkpoint,
        };
        let policy = |extra: &str| {
            TrustPolicy::parse(format!("log {}\n{extra}", log.vkey().to_note_vkey()).as_bytes())
                .unwrap()
        };
        let proven = proof.verify(&policy("quorum none\n"), 0).unwrap();
        assert_eq!(proven.index, 1);
        let witness = crate::cosignature::Cosigner::new(crate::SigningKey::from_seed(
            crate::KeyName::new("w.example").unwrap(),
            [8; 32],
        ));
        let needs_witness = policy(&format!(
            "witness w {}\nquorum w\n",
            witness.verifier().to_vkey()
        ));
        assert!(matches!(
            proof.verify(&needs_witness, 0),
            Err(crate::Error::Answer(AnswerError::WitnessQuorum {
                size: 2,
                ..
            }))
        ));
        let other = TrustPolicy::parse(
            format!(
                "log {}\nquorum none\n",
                TestLog::new("q.example/log", 9).vkey().to_note_vkey()
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            proof.verify(&other, 0),
            Err(crate::Error::Answer(AnswerError::UnknownLog(o))) if o == "p.example/log"
        ));
        let mut altered = proof.clone();
        altered.extra = Some(crate::sample::attestation(3).as_bytes().to_vec());
        assert!(altered.verify(&policy("quorum none\n"), 0).is_err());
    }
}
