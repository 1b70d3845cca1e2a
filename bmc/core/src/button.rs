//! The front-panel button: debounce, then classify presses.
//!
//! | debounced edge | held for | result |
//! |---|---|---|
//! | release | < `long_press` | [`Press::Short`]: toggle power |
//! | release | ≥ `long_press` | [`Press::Long`]: force slot B for the next boot |
//! | release | ≥ `key_clear` | [`Press::VeryLong`]: clear the unit key, power-cycle |
//!
//! A level counts only after it has been stable for `debounce`; bounces
//! shorter than that are ignored.

use racklet_bmc_proto::Press;

use crate::time::{Instant, Millis};

/// Debouncer and press classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Button {
    debounce: Millis,
    long_press: Millis,
    key_clear: Millis,
    raw: bool,
    raw_since: Instant,
    stable: bool,
    pressed_at: Instant,
    last: Press,
}

impl Button {
    /// A released button.
    pub fn new(debounce: Millis, long_press: Millis, key_clear: Millis) -> Button {
        Button {
            debounce,
            long_press,
            key_clear,
            raw: false,
            raw_since: Instant(0),
            stable: false,
            pressed_at: Instant(0),
            last: Press::None,
        }
    }

    /// Feeds the raw input level (`true` = pressed) sampled at `now`.
    /// Returns a completed press.
    pub fn sample(&mut self, level: bool, now: Instant) -> Option<Press> {
        if level != self.raw {
            self.raw = level;
            self.raw_since = now;
        }
        self.tick(now)
    }

    /// Time passes with the input unchanged. Returns a completed press.
    pub fn tick(&mut self, now: Instant) -> Option<Press> {
        if self.raw == self.stable || now - self.raw_since < self.debounce {
            return None;
        }
        self.stable = self.raw;
        if self.stable {
            // The press began when the level first went down.
            self.pressed_at = self.raw_since;
            None
        } else {
            let held = self.raw_since - self.pressed_at;
            let press = if held >= self.key_clear {
                Press::VeryLong
            } else if held >= self.long_press {
                Press::Long
            } else {
                Press::Short
            };
            self.last = press;
            Some(press)
        }
    }

    /// Debounced level.
    pub fn pressed(&self) -> bool {
        self.stable
    }

    /// The last completed press.
    pub fn last_press(&self) -> Press {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Button {
        Button::new(Millis(20), Millis(3000), Millis(10_000))
    }

    #[test]
    fn short_and_long_presses() {
        let mut btn = b();
        assert_eq!(btn.sample(true, Instant(100)), None);
        assert_eq!(btn.tick(Instant(130)), None);
        assert!(btn.pressed());
        assert_eq!(btn.sample(false, Instant(400)), None);
        assert_eq!(btn.tick(Instant(420)), Some(Press::Short));
        assert_eq!(btn.sample(true, Instant(1000)), None);
        assert_eq!(btn.tick(Instant(2000)), None);
        assert_eq!(btn.sample(false, Instant(4000)), None);
        assert_eq!(btn.tick(Instant(4030)), Some(Press::Long));
        assert_eq!(btn.last_press(), Press::Long);
    }

    #[test]
    fn just_under_three_seconds_is_short_and_exactly_three_is_long() {
        let mut btn = b();
        btn.sample(true, Instant(0));
        btn.tick(Instant(50));
        btn.sample(false, Instant(2999));
        assert_eq!(btn.tick(Instant(3100)), Some(Press::Short));
        btn.sample(true, Instant(5000));
        btn.tick(Instant(5050));
        btn.sample(false, Instant(8000));
        assert_eq!(btn.tick(Instant(8100)), Some(Press::Long));
    }

    #[test]
    fn ten_seconds_is_very_long() {
        let mut btn = b();
        btn.sample(true, Instant(0));
        btn.tick(Instant(50));
        btn.sample(false, Instant(9999));
        assert_eq!(btn.tick(Instant(10_100)), Some(Press::Long));
        btn.sample(true, Instant(20_000));
        btn.tick(Instant(20_050));
        btn.sample(false, Instant(30_000));
        assert_eq!(btn.tick(Instant(30_100)), Some(Press::VeryLong));
    }

    #[test]
    fn bounces_shorter_than_debounce_are_ignored() {
        let mut btn = b();
        for t in (0..200).step_by(10) {
            // Toggles every 10 ms: never stable for 20 ms.
            assert_eq!(btn.sample(t % 20 == 0, Instant(t)), None);
        }
        assert!(!btn.pressed());
        assert_eq!(btn.last_press(), Press::None);
    }

    #[test]
    fn bounce_during_a_long_hold_does_not_split_it() {
        let mut btn = b();
        btn.sample(true, Instant(0));
        btn.tick(Instant(30));
        // A 5 ms glitch in the middle.
        btn.sample(false, Instant(1500));
        btn.sample(true, Instant(1505));
        btn.tick(Instant(1600));
        btn.sample(false, Instant(3500));
        assert_eq!(btn.tick(Instant(3600)), Some(Press::Long));
    }
}
