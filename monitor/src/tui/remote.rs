//! The terminal UI on a remote machine (`secmon-tui --connect URL --token-file FILE`): the same
//! loop, panes and keys, fed by the remote controller's stream instead of a local pipeline.
//! No root, no eBPF, no local rules or history: the events arrive analysed by the remote and
//! are shown as they are; the keys act on the remote through its API
//! (`remote::ui_adapter`). The stream reconnects by itself; the header says how the link is.
use std::sync::Arc;

use chrono::{Local, Offset, Utc};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

use super::{Arrival, Feed, NOTICES, Sources, Stop, report_stop, run_terminal};
use crate::{
    app::{App, Controls, StatusKind},
    event::Event as SecEvent,
    losses::Losses,
    notice,
    remote::{
        Client, LINK_QUEUE, Link, RemoteError, RemoteStatus,
        ui_adapter::{
            Remote, RemoteHistory, RemoteLinkView, RemoteProbes, RemoteResponse, RemoteRules,
        },
    },
};

/// The remote stream and this process's stop signals, as the loop reads them.
pub struct RemoteFeed {
    events: mpsc::Receiver<Vec<SecEvent>>,
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl RemoteFeed {
    pub(super) async fn next(&mut self) -> Arrival {
        tokio::select! {
            Some(events) = self.events.recv() => Arrival::Events(events),
            _ = self.int.recv() => Arrival::Stop(Stop::Signal("SIGINT")),
            _ = self.term.recv() => Arrival::Stop(Stop::Signal("SIGTERM")),
            // The SSH session is gone.
            _ = self.hup.recv() => Arrival::Stop(Stop::Signal("SIGHUP")),
            else => std::future::pending().await,
        }
    }
}

/// What a remote session saw, for the line printed once the terminal is back.
#[derive(Clone, Debug, Default)]
pub struct RemoteSummary {
    pub host: String,
    pub events: u64,
    /// Lost on the link: the remote's `lost` messages and what was dropped here.
    pub lost_on_link: u64,
}

/// Runs the UI over the controller `client` talks to, whose `status` was read at start (so a
/// wrong token or address is an error before the terminal is taken).
pub async fn run_remote(
    client: Client,
    status: RemoteStatus,
) -> Result<RemoteSummary, RemoteError> {
    let losses = Arc::new(Losses::new());
    let (events_tx, events) = mpsc::channel(LINK_QUEUE);
    let link = Link::start(
        client.url().clone(),
        client.token().clone(),
        client.roots(),
        events_tx,
    )?;
    let base = client.url().base();
    let remote = Remote::new(client, status, link.shared(), losses.clone());
    let poller = remote.start_poller()?;
    let (history_tx, history_rx) = mpsc::unbounded_channel();
    let controls = Controls {
        probes: Box::new(RemoteProbes(remote.clone())),
        rules: Box::new(RemoteRules(remote.clone())),
        response: Box::new(RemoteResponse(remote.clone())),
        history: Box::new(RemoteHistory::start(remote.clone(), history_tx)),
        losses,
    };
    let offset = Local::now().offset().fix();
    let mut app = App::new(controls, offset, Utc::now());
    app.set_link(Box::new(RemoteLinkView(remote.clone())));
    let host = remote.host();
    app.set_status(
        format!("connected to {host} ({base}): the keys act on that machine"),
        StatusKind::Info,
    );
    let mut sources = Sources {
        feed: Feed::Remote(RemoteFeed {
            events,
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        }),
        history: history_rx,
        notices: notice::subscribe(NOTICES, notice::Terminal::Owned),
    };
    let outcome = run_terminal(&mut app, &mut sources).await;
    drop(sources);
    let lost_on_link = app.link.as_ref().map_or(0, |l| l.lost);
    let summary = RemoteSummary {
        host: remote.host(),
        events: app.received,
        lost_on_link,
    };
    drop(app);
    drop(poller);
    drop(link);
    report_stop(outcome?);
    Ok(summary)
}
