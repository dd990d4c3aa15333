//! How the CLI shows [`Progress`]: a bar when stderr is a terminal, plain
//! lines otherwise (logs, CI, scripts). Both go to stderr, so stdout keeps
//! only the result (text or `--output json`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::volume::human_size;
use crate::progress::Progress;

/// Work shorter than this shows no progress lines at all.
const QUIET_FOR: Duration = Duration::from_secs(1);
/// At most one plain line per this interval (besides each 10% step).
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A progress display for one piece of work, labelled (e.g. "snapshot").
#[derive(Debug)]
pub struct Reporter {
    label: String,
    started: Instant,
    /// Work shorter than this prints no lines.
    quiet_for: Duration,
    total: AtomicU64,
    done: AtomicU64,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Bar(indicatif::ProgressBar),
    /// Plain lines to `out`: when the last one was printed, at which tenth.
    Lines(Mutex<Lines>),
}

struct Lines {
    last: Instant,
    tenth: u64,
    out: Box<dyn Write + Send>,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").field("tenth", &self.tenth).finish()
    }
}

impl Reporter {
    /// A bar if stderr is a terminal, plain lines otherwise.
    pub fn new(label: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::lines(label, QUIET_FOR, Box::new(std::io::stderr()));
        }
        let bar = indicatif::ProgressBar::hidden();
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        Self::with_mode(label, QUIET_FOR, Mode::Bar(bar))
    }

    /// Plain lines to `out`, the first once the work has run `quiet_for`.
    fn lines(label: &str, quiet_for: Duration, out: Box<dyn Write + Send>) -> Self {
        let lines = Lines {
            last: Instant::now(),
            tenth: 0,
            out,
        };
        Self::with_mode(label, quiet_for, Mode::Lines(Mutex::new(lines)))
    }

    fn with_mode(label: &str, quiet_for: Duration, mode: Mode) -> Self {
        Reporter {
            label: label.to_string(),
            started: Instant::now(),
            quiet_for,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            mode,
        }
    }

    /// Clears the bar; the command prints its own result line after.
    pub fn finish(&self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }

    fn line(&self, out: &mut dyn Write, done: u64, total: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        // Progress is best effort: a closed stderr must not fail the work.
        let _ = writeln!(
            out,
            "{}: {pct}% ({} of {}, {}/s)",
            self.label,
            human_size(done),
            human_size(total),
            human_size((done as f64 / secs) as u64)
        );
    }
}

impl Progress for Reporter {
    fn start(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if let Mode::Bar(bar) = &self.mode {
            bar.set_length(total);
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        match &self.mode {
            Mode::Bar(bar) => bar.inc(bytes),
            Mode::Lines(lines) => {
                let total = self.total.load(Ordering::Relaxed);
                if self.started.elapsed() < self.quiet_for || total == 0 {
                    return;
                }
                let tenth = (done.saturating_mul(10) / total).min(10);
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                if tenth > l.tenth || l.last.elapsed() >= LINE_EVERY {
                    l.last = Instant::now();
                    l.tenth = tenth;
                    self.line(&mut l.out, done, total);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(out: &Shared) -> String {
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_lines_at_each_tenth() {
        let out = Shared::default();
        let r = Reporter::lines("copy", Duration::ZERO, Box::new(out.clone()));
        r.start(100 << 20);
        for _ in 0..100 {
            r.advance(1 << 20);
        }
        r.finish();
        let text = text(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "{text}");
        assert!(
            lines[0].starts_with("copy: 10% (10 MiB of 100 MiB, "),
            "{text}"
        );
        assert!(
            lines[9].starts_with("copy: 100% (100 MiB of 100 MiB, "),
            "{text}"
        );
    }

    #[test]
    fn workers_on_many_threads_end_at_100_percent() {
        let out = Shared::default();
        let r = Reporter::lines("copy", Duration::ZERO, Box::new(out.clone()));
        r.start(100 << 20);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        r.advance(1 << 20);
                    }
                });
            }
        });
        let text = text(&out);
        let n = text.lines().count();
        assert!((1..=10).contains(&n), "{text}");
        // Whichever thread finishes last reports the whole.
        assert!(
            text.lines().any(|l| l.starts_with("copy: 100% (100 MiB")),
            "{text}"
        );
    }

    #[test]
    fn short_work_prints_nothing() {
        let out = Shared::default();
        let r = Reporter::lines("restore", Duration::from_secs(3600), Box::new(out.clone()));
        r.start(10);
        r.advance(10);
        r.finish();
        assert!(out.0.lock().unwrap().is_empty());
    }
}
