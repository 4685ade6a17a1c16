//! `vigie top`: the fleet dashboard in a terminal. The selected hosts'
//! figures live (one metrics stream per host, opened when the screen
//! opens and closed with it), sorted and filtered, hot hosts marked; keys
//! select hosts and run a command on them, whose result shows in the lower
//! part. The terminal is put back as it was on every way out: `q`, Esc,
//! Ctrl-C, SIGTERM, SIGHUP, an error, a panic (ratatui's hook).
//!
//! `state` holds what the keys change, `render` draws it; this file owns
//! the terminal and the loop.

pub mod render;
pub mod state;

use std::{io::IsTerminal, time::Duration};

use crossterm::event::{Event, EventStream, KeyCode, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use self::state::{Action, Key, Top};
use super::{
    dashboard::{self, Board, Thresholds},
    fleet::{Execution, Fleet, RunOptions},
    history::{EntryKind, History},
    run::Run,
};
use crate::command::ExecRequest;

/// How much of each host's output a command's result keeps (the screen
/// shows each group's first line).
const KEPT: usize = 4096;

/// The shortest time between two redraws while figures stream in: ten
/// thousand hosts sampling every two seconds would otherwise redraw the
/// screen five thousand times a second.
const REDRAW: Duration = Duration::from_millis(100);

/// What `vigie top` needs.
pub struct Options<'a> {
    /// The hosts.
    pub fleet: &'a Fleet,
    /// The hosts to show.
    pub selection: &'a [usize],
    /// Time between samples.
    pub interval: Duration,
    /// Where each metric makes a host hot.
    pub thresholds: Thresholds,
    /// Hosts a command runs on at once.
    pub concurrency: usize,
    /// Where commands run from the screen are recorded.
    pub history: Option<&'a History>,
}

/// Why `vigie top` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Standard output or input is not a terminal.
    #[error("vigie top needs a terminal (for line output, use `vigie watch`)")]
    NotATerminal,
    /// The terminal failed.
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Puts the terminal back when dropped, however the screen ends.
struct Screen(ratatui::DefaultTerminal);

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the screen until the user leaves; returns notes to print once the
/// terminal is back (a command's history could not be written, …).
pub async fn run(options: Options<'_>) -> Result<Vec<String>, TopError> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let mut notes = Vec::new();
    let fleet = options.fleet;
    let names: Vec<(usize, String)> = options
        .selection
        .iter()
        .filter_map(|&i| Some((i, fleet.host(i)?.name().to_owned())))
        .collect();
    let mut top = Top::new(Board::new(names.clone(), options.thresholds));
    let stop = CancellationToken::new();
    // Stops the metrics streams however this function ends.
    let _stopping = stop.clone().drop_guard();
    let mut feed = dashboard::feed(fleet, options.selection, options.interval, stop.clone());
    let mut terms = signal(SignalKind::terminate())?;
    let mut hangups = signal(SignalKind::hangup())?;
    let mut keys = EventStream::new();
    // The terminal is changed last, once nothing above can fail.
    // A terminal half set up (raw mode on, no alternate screen) is put
    // back too.
    let mut screen = Screen(ratatui::try_init().inspect_err(|_| ratatui::restore())?);
    // ratatui's hook puts the terminal back on a panic; a panic in any
    // task (which tokio would catch, leaving this loop drawing on a
    // terminal no longer raw) must then end the program too.
    let restoring = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restoring(info);
        std::process::exit(101);
    }));
    let mut execution: Option<Execution> = None;
    let mut redraw = tokio::time::interval(REDRAW);
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut feeding = !options.selection.is_empty();
    // The table's height at the last draw: a resize or the result pane
    // appearing redraws before the next key.
    let mut page = 0;
    loop {
        if dirty {
            screen
                .0
                .draw(|frame| page = render::draw(frame, &mut top))?;
            dirty = false;
        }
        tokio::select! {
            event = keys.next() => {
                let Some(event) = event else { break };
                match event? {
                    Event::Key(key) if key.kind != KeyEventKind::Release => {
                        let Some(key) = key_of(key.code, key.modifiers) else { continue };
                        match top.key(key, page) {
                            Action::Quit => break,
                            Action::Run(command, hosts) => {
                                if execution.is_some() {
                                    top.message = Some("a command is still running".into());
                                } else {
                                    let on: Vec<(usize, String)> = names
                                        .iter()
                                        .filter(|(i, _)| hosts.contains(i))
                                        .cloned()
                                        .collect();
                                    top.run = Some(Run::new(EntryKind::Command, &command, &on, KEPT, false));
                                    execution = Some(fleet.exec(
                                        &hosts,
                                        ExecRequest::new(command),
                                        RunOptions { concurrency: options.concurrency, deadline: None },
                                    ));
                                }
                            }
                            Action::None => {}
                        }
                        dirty = true;
                    }
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
            news = feed.recv(), if feeding => {
                let Some((host, news)) = news else {
                    feeding = false;
                    continue;
                };
                top.board.update(host, news);
                // Take in everything already waiting before drawing.
                while let Ok((host, news)) = feed.try_recv() {
                    top.board.update(host, news);
                }
                // Drawn at the next tick, not now.
            }
            event = next_event(&mut execution) => {
                match event {
                    Some(event) => {
                        if let Some(run) = &mut top.run {
                            run.apply(&event, |_, _, _| {});
                        }
                    }
                    None => {
                        execution = None;
                        record(options.history, top.run.as_ref(), &mut notes);
                    }
                }
                dirty = true;
            }
            _ = redraw.tick() => dirty = true,
            _ = terms.recv() => break,
            _ = hangups.recv() => break,
        }
    }
    drop(screen);
    if let Some(mut execution) = execution {
        // Leaving kills what the screen started, as Ctrl-C does for exec,
        // and records what it did: it may have run on some hosts.
        execution.cancel();
        notes.push("the command still running was cancelled".into());
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(event) = execution.events.recv().await {
                if let Some(run) = &mut top.run {
                    run.apply(&event, |_, _, _| {});
                }
            }
        })
        .await;
        record(options.history, top.run.as_ref(), &mut notes);
    }
    Ok(notes)
}

/// Writes a finished command's entry in the history.
fn record(history: Option<&History>, run: Option<&Run>, notes: &mut Vec<String>) {
    if let (Some(history), Some(entry)) = (history, run.and_then(Run::history_entry))
        && let Err(e) = history.append(&entry)
    {
        notes.push(format!("not recorded in the history: {e}"));
    }
}

/// The next event of the command running, if one is; pending forever
/// otherwise (so that `select!` waits on the other branches).
async fn next_event(execution: &mut Option<Execution>) -> Option<super::fleet::RunEvent> {
    match execution {
        Some(execution) => execution.events.recv().await,
        None => std::future::pending().await,
    }
}

/// The state's key for a terminal key.
fn key_of(code: KeyCode, modifiers: KeyModifiers) -> Option<Key> {
    Some(match code {
        KeyCode::Char(c) if modifiers.contains(KeyModifiers::CONTROL) => {
            Key::Ctrl(c.to_ascii_lowercase())
        }
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        _ => return None,
    })
}
