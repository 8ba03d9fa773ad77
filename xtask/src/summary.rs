//! The `cargo xtask test` report: counts parsed from libtest's `test result:` lines, one row per
//! step (suite × engine), a table, and the total line `test: N passed, M failed`.

use std::fmt::Write as _;
use std::time::Duration;

/// Test counts of one step, summed over every `test result:` line it printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

/// Sums every libtest / wasm-bindgen-test `test result: ... N passed; M failed; K ignored; ...`
/// line in `output`; `None` if there is no such line.
pub fn parse_counts(output: &str) -> Option<Counts> {
    let mut total: Option<Counts> = None;
    for line in output.lines() {
        let Some((_, rest)) = line.split_once("test result:") else {
            continue;
        };
        let sum = total.get_or_insert_with(Counts::default);
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(number), Some(label)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => sum.passed += n,
                "failed" => sum.failed += n,
                "ignored" => sum.ignored += n,
                _ => {}
            }
        }
    }
    total
}

/// What one step of the run did.
#[derive(Clone, Debug)]
pub struct Row {
    /// e.g. `host`, `sw`, `page`, `e2e`, `fmt`, `clippy`.
    pub suite: String,
    /// `chromium`, `firefox`, `host` or `wasm32`.
    pub engine: String,
    /// Test counts, for steps that run tests.
    pub counts: Option<Counts>,
    /// Why the step failed, if it did.
    pub failure: Option<String>,
    pub time: Duration,
}

impl Row {
    /// A step that runs tests: it fails if its command failed, a test failed, or no test ran.
    pub fn tests(suite: &str, engine: &str, output: &str, command_ok: bool, time: Duration) -> Row {
        let counts = parse_counts(output);
        let failure = match counts {
            None => Some(if command_ok {
                "printed no test result".to_string()
            } else {
                "did not run (see output above)".to_string()
            }),
            Some(c) if c.failed > 0 => Some(format!("{} failed", c.failed)),
            Some(_) if !command_ok => Some("command failed".to_string()),
            Some(c) if c.passed == 0 => Some("ran 0 tests".to_string()),
            Some(_) => None,
        };
        Row {
            suite: suite.into(),
            engine: engine.into(),
            counts,
            failure,
            time,
        }
    }

    /// A step that checks without counting tests (fmt, clippy, build).
    pub fn check(suite: &str, engine: &str, failure: Option<String>, time: Duration) -> Row {
        Row {
            suite: suite.into(),
            engine: engine.into(),
            counts: None,
            failure,
            time,
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }
}

/// Total passed tests, and failures: failed tests plus failed steps that counted none (a lint
/// error, a build error, a suite that could not run), so a failing run never reports 0.
pub fn totals(rows: &[Row]) -> (u64, u64) {
    let passed = rows.iter().filter_map(|r| r.counts).map(|c| c.passed).sum();
    let failed = rows
        .iter()
        .map(|r| match (r.counts, r.failed()) {
            (Some(c), true) if c.failed > 0 => c.failed,
            (Some(c), false) => c.failed,
            (_, true) => 1,
            (None, false) => 0,
        })
        .sum();
    (passed, failed)
}

/// The table and the total line.
pub fn render(rows: &[Row], wall: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<9} {:>7} {:>7} {:>8} {:>8}  result",
        "suite", "engine", "passed", "failed", "ignored", "time"
    );
    for row in rows {
        let (p, f, i) = match row.counts {
            Some(c) => (
                c.passed.to_string(),
                c.failed.to_string(),
                c.ignored.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let result = match &row.failure {
            None => "ok".to_string(),
            Some(why) => format!("FAILED: {why}"),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<9} {:>7} {:>7} {:>8} {:>7.1}s  {}",
            row.suite,
            row.engine,
            p,
            f,
            i,
            row.time.as_secs_f64(),
            result
        );
    }
    let (passed, failed) = totals(rows);
    let _ = writeln!(out, "wall time {:.1}s", wall.as_secs_f64());
    let _ = writeln!(out, "test: {passed} passed, {failed} failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
running 3 tests
test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
   Doc-tests background_assets
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s
test result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s
";

    #[test]
    fn counts_are_summed_over_every_result_line() {
        let c = parse_counts(HOST).unwrap();
        assert_eq!(
            c,
            Counts {
                passed: 9,
                failed: 2,
                ignored: 1
            }
        );
    }

    #[test]
    fn output_without_a_result_line_has_no_counts() {
        assert_eq!(parse_counts("error[E0425]: cannot find value"), None);
    }

    #[test]
    fn a_suite_fails_when_it_ran_nothing_failed_a_test_or_did_not_run() {
        let ms = Duration::from_millis(1);
        let zero = "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out";
        assert!(Row::tests("sw", "firefox", zero, true, ms).failed());
        assert!(Row::tests("host", "host", HOST, false, ms).failed());
        assert!(Row::tests("page", "chromium", "", false, ms).failed());
        let good = "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out";
        assert!(!Row::tests("page", "chromium", good, true, ms).failed());
    }

    #[test]
    fn totals_count_failed_steps_without_tests_as_one_failure() {
        let ms = Duration::from_millis(1);
        let rows = [
            Row::check("fmt", "host", Some("diff".into()), ms),
            Row::tests("host", "host", HOST, false, ms),
        ];
        assert_eq!(totals(&rows), (9, 3));
        let text = render(&rows, ms);
        assert!(
            text.lines().any(|l| l == "test: 9 passed, 3 failed"),
            "{text}"
        );
        assert!(text.contains("FAILED: diff"));
    }
}
