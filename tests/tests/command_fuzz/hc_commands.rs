//! The generator's HC commands: every command of the module, with options in random case,
//! order and repetition, wrong arities, bad numbers and lease tokens.

use crate::generator::{Cmd, Gen, BAD_NUMBERS};
use hybridcache_protocol::command;

impl Gen {
    fn hc_set(&mut self) -> Cmd {
        let mut w = vec![self.hc_name(command::SET), self.key(), self.value()];
        if self.one_in(25) {
            let keep = 1 + self.below(2) as usize;
            w.truncate(keep);
            return Cmd {
                words: w,
                module: true,
            };
        }
        let options = match self.below(10) {
            0..=3 => 0,
            4..=6 => 1,
            7..=8 => 2,
            _ => 3 + self.below(4),
        };
        for _ in 0..options {
            match self.below(17) {
                0 => {
                    w.push(self.random_case("EX"));
                    w.push(self.number(4));
                }
                1 => {
                    w.push(self.random_case("PX"));
                    w.push(self.number(3000));
                }
                2 => {
                    w.push(self.random_case("EXAT"));
                    w.push(self.abs_time(true));
                }
                3 => {
                    w.push(self.random_case("PXAT"));
                    w.push(self.abs_time(false));
                }
                4 => w.push(self.random_case("KEEPTTL")),
                5 => w.push(self.random_case("NX")),
                6 => w.push(self.random_case("XX")),
                7 | 8 => w.push(self.random_case("GETVERSION")),
                9 => {
                    // An expiry keyword missing its value (when last) or taking the next
                    // option as its value.
                    let word = *self.pick(&["EX", "PX", "EXAT", "PXAT"]);
                    w.push(self.random_case(word));
                }
                10 => {
                    let junk = *self.pick(&["EXX", "P X", "", "TAG", "NXX", "\0", "GETVERSIONS"]);
                    w.push(junk.as_bytes().to_vec());
                }
                11 => {
                    let n = self.below(9) as usize;
                    w.push(self.bytes(n));
                }
                12 => w.push(self.number(100)),
                14 | 15 => {
                    w.push(self.random_case("LEASE"));
                    let token = self.token();
                    w.push(token);
                }
                // Without its token (when last), or taking the next option as its token.
                16 => w.push(self.random_case("LEASE")),
                _ => {
                    let word = *self.pick(&["EX", "PX"]);
                    w.push(self.random_case(word));
                    w.push(self.pick(&BAD_NUMBERS).as_bytes().to_vec());
                }
            }
        }
        if self.below(10) < 6 {
            w.push(self.random_case("TAGS"));
            let count = match self.below(100) {
                0..=4 => 0,
                5..=84 => 1 + self.below(6),
                85..=94 => 20 + self.below(300),
                _ => 50,
            };
            let duplicates = self.one_in(5);
            for _ in 0..count {
                let tag = if duplicates {
                    format!("t:{}", self.below(3)).into_bytes()
                } else {
                    self.tag()
                };
                w.push(tag);
            }
        }
        Cmd {
            words: w,
            module: true,
        }
    }

    pub(crate) fn hc_command(&mut self) -> Cmd {
        let mut w;
        match self.below(100) {
            0..=34 => return self.hc_set(),
            35..=46 => {
                w = vec![self.hc_name(command::GET)];
                w.extend(self.args(1, Gen::key).into_iter().take(3));
            }
            47..=54 => {
                w = vec![self.hc_name(command::FETCH)];
                match self.below(12) {
                    0..=3 => {
                        w.push(self.key());
                        w.push(self.random_case("LEASE"));
                    }
                    4 | 5 => {
                        w.push(self.key());
                        w.push(self.random_case("LEASE"));
                        w.push(self.random_case("ALWAYS"));
                    }
                    6 => {
                        w.push(self.key());
                        let option = *self.pick(&["LEASES", "LEAS", "", "LEASE\0", "TAGS", "NX"]);
                        w.push(option.as_bytes().to_vec());
                        if self.one_in(3) {
                            w.push(self.random_case("LEASE"));
                        }
                    }
                    7 | 8 => {
                        // Two words after the key that are not `LEASE ALWAYS`, or that and a third.
                        w.push(self.key());
                        let (first, second) = *self.pick(&[
                            ("ALWAYS", "LEASE"),
                            ("LEASE", "ALWAYSS"),
                            ("LEASE", "LEASE"),
                            ("ALWAYS", "ALWAYS"),
                            ("LEASE", "ALWAYS\0"),
                            ("LEASE", ""),
                            ("", "ALWAYS"),
                            ("NX", "ALWAYS"),
                        ]);
                        if self.one_in(4) {
                            // `LEASE ALWAYS` and one word too many.
                            w.push(self.random_case("LEASE"));
                            w.push(self.random_case("ALWAYS"));
                            w.push(self.random_case(first));
                        } else {
                            w.push(self.random_case(first));
                            w.push(self.random_case(second));
                        }
                    }
                    9 => {
                        w.push(self.key());
                        w.push(self.random_case("ALWAYS"));
                    }
                    _ => w.extend(self.args(1, Gen::key).into_iter().take(3)),
                }
            }
            55..=62 => {
                w = vec![self.hc_name(command::MGET)];
                let n = 1 + self.below(8);
                w.extend(self.args(n, Gen::key));
            }
            63..=70 => {
                let name = if self.one_in(3) {
                    command::STALE
                } else {
                    command::DEL
                };
                w = vec![self.hc_name(name)];
                let n = 1 + self.below(4);
                w.extend(self.args(n, Gen::key));
            }
            71..=76 => {
                let name = match self.below(6) {
                    0 | 1 => command::STALETAG,
                    2 | 3 => command::DELTAGALL,
                    _ => command::DELTAG,
                };
                w = vec![self.hc_name(name)];
                let n = 1 + self.below(3);
                w.extend(self.args(n, Gen::tag));
            }
            77..=83 => {
                w = vec![self.hc_name(command::TAGS)];
                w.extend(self.args(1, Gen::key).into_iter().take(3));
            }
            84..=91 => {
                w = vec![self.hc_name(command::TAGKEYS)];
                w.extend(self.args(1, Gen::tag).into_iter().take(3));
            }
            92..=97 => {
                w = vec![self.hc_name(command::TAGCARD)];
                w.extend(self.args(1, Gen::tag).into_iter().take(3));
            }
            _ => {
                if self.one_in(3) {
                    w = vec![self.hc_name(command::CHECK)];
                    if self.one_in(2) {
                        w.push(self.key());
                    }
                } else if self.one_in(2) {
                    w = vec![self.hc_name(command::HELLO)];
                    if self.one_in(3) {
                        let n = self.below(12) as usize;
                        w.push(self.bytes(n));
                    }
                } else {
                    // Not a command: Redis answers "unknown command" (printable arguments
                    // only, since Redis quotes them in its reply).
                    w = vec![self.pick(&[&b"HC."[..], b"HC.NOPE", b"hc.sett"]).to_vec()];
                    let n = self.below(3) as usize;
                    for _ in 0..n {
                        let len = self.below(12) as usize;
                        w.push(self.printable(len));
                    }
                    return Cmd {
                        words: w,
                        module: false,
                    };
                }
            }
        }
        Cmd {
            words: w,
            module: true,
        }
    }
}
