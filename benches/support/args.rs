//! The benchmarks' command line: the flags after `cargo bench --bench NAME --`, read one by
//! one by the benchmark, with `--bench` (passed by `cargo bench`) skipped and `-h`/`--help`
//! answered here. Used by `benches/relay.rs` and `benches/sessions.rs`.

/// Whether `cargo bench` started the binary (it passes `--bench`); without it (as
/// `cargo test --all-targets` runs it) a benchmark makes a smoke run with small sizes.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The arguments, read flag by flag; every error message ends with the usage line.
pub struct Cli {
    it: std::iter::Skip<std::env::Args>,
    usage: &'static str,
}

impl Cli {
    pub fn new(usage: &'static str) -> Self {
        Self {
            it: std::env::args().skip(1),
            usage,
        }
    }

    /// The next flag; `--bench` is skipped, `-h`/`--help` prints the usage and exits.
    pub fn next_flag(&mut self) -> Option<String> {
        loop {
            let arg = self.it.next()?;
            match arg.as_str() {
                "--bench" => {} // passed by `cargo bench`
                "-h" | "--help" => {
                    println!("{}", self.usage);
                    std::process::exit(0);
                }
                _ => return Some(arg),
            }
        }
    }

    /// The value after a flag, if there is one.
    pub fn value(&mut self) -> Option<String> {
        self.it.next()
    }

    /// The number after the flag `name` (`_` may group digits).
    #[track_caller]
    pub fn number(&mut self, name: &str) -> usize {
        match self.it.next().and_then(|v| v.replace('_', "").parse().ok()) {
            Some(number) => number,
            None => panic!("{name} takes a number; {}", self.usage),
        }
    }

    /// Stops the run: a flag's value is not one of its choices.
    #[track_caller]
    pub fn bad_value(&self) -> ! {
        panic!("{}", self.usage)
    }

    /// Stops the run: `what` (e.g. `unknown path "x"`) is wrong.
    #[track_caller]
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}; {}", self.usage)
    }

    /// Stops the run: `arg` is not a flag of this benchmark.
    #[track_caller]
    pub fn unknown(&self, arg: &str) -> ! {
        self.fail(&format!("unknown argument {arg:?}"))
    }
}
