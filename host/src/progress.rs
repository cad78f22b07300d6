//! Progress on stderr, shown only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress line for one stage; invisible when stderr is not a terminal.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Starts a stage. With `total`, shows a bar; without, a counter.
    pub fn start(stage: &str, total: Option<u64>, enabled: bool) -> Progress {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{prefix:>10} [{bar:30}] {human_pos}/{human_len} {per_sec} {eta}"
        } else {
            "{prefix:>10} {spinner} {human_pos} records {per_sec}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("progress templates are valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_string());
        if enabled && std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        Progress { bar }
    }

    /// Sets the position.
    pub fn set(&self, position: u64) {
        self.bar.set_position(position);
    }

    /// Advances the position by `delta`.
    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }

    /// Ends the stage and clears its line.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
