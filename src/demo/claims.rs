//! The demo's narrator: it prints the story in plain words and every claim it makes, and a
//! claim is printed only with the check that proves it (held or failed, and why).

use std::fmt::Display;

/// Prints one line of the story on standard output.
pub fn line(text: String) {
    crate::cli::write_stdout(&(text + "\n"));
}

/// A claim that did not hold: the story stops there.
#[derive(Debug, thiserror::Error)]
#[error("claim did not hold: {claim}: {why}")]
pub struct Broken {
    /// What was claimed.
    pub claim: String,
    /// What the check found instead.
    pub why: String,
}

/// Prints the story and counts the claims checked.
#[derive(Debug, Default)]
pub struct Narrator {
    step: usize,
    held: usize,
}

impl Narrator {
    /// A new chapter of the story.
    pub fn chapter(&mut self, title: &str) {
        self.step += 1;
        line(format!("\n{}. {title}", self.step));
    }

    /// A line of the story (what is being done, where to look).
    pub fn say(&self, text: impl Display) {
        line(format!("   {text}"));
    }

    /// Checks a claim: prints it as held, or returns why it did not hold.
    pub fn claim<E: Display>(&mut self, claim: &str, check: Result<(), E>) -> Result<(), Broken> {
        match check {
            Ok(()) => {
                self.held += 1;
                line(format!("   ✓ {claim}"));
                Ok(())
            }
            Err(e) => {
                line(format!("   ✗ {claim}: {e}"));
                Err(Broken {
                    claim: claim.to_string(),
                    why: e.to_string(),
                })
            }
        }
    }

    /// How many claims were checked and held.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_only_when_its_check_does() {
        let mut n = Narrator::default();
        assert!(n.claim("one", Ok::<(), String>(())).is_ok());
        let broken = n.claim("two", Err("was 3, not 4")).unwrap_err();
        assert_eq!(broken.claim, "two");
        assert_eq!(broken.why, "was 3, not 4");
        assert_eq!(n.held(), 1);
    }
}
