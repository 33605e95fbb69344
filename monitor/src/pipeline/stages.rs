//! The stages between a source and the front ends, run by one task: enrich (kernel records
//! only: a replay's events are enriched already), the recording tap, analysis by the rules,
//! the response, the history tap. Every event is made, analysed and handed on by this one
//! task, batch by batch.
use std::sync::Arc;

use chrono::DateTime;

use super::taps::Taps;
use crate::{
    decode::Record,
    enrich::Enricher,
    event::{Event, EventType},
    losses::{Loss, Losses},
    response::Responder,
    rules::Evaluator,
};

pub(super) struct Stages {
    pub enricher: Enricher,
    pub evaluator: Evaluator,
    /// The response layer (a live capture only: a replay is not acted on).
    pub responder: Option<Responder>,
    pub taps: Taps,
    /// Shared with the reader, the front ends and the UI; the enricher's, the history's and
    /// the webhook's own counts are copied in once a second ([`Stages::record_losses`]).
    pub losses: Arc<Losses>,
}

impl Stages {
    /// Hands each event of `records` (kernel records), analysed, to `emit`.
    ///
    /// Each event is built, analysed and handed on in one slot, reused from record to record
    /// (see [`Enricher::process_into`]); `emit` takes the event out of it only to keep it.
    pub fn process_records(&mut self, records: &[Record], emit: &mut impl FnMut(&mut Event)) {
        let mut slot = Event::new(EventType::ProcessExec, DateTime::UNIX_EPOCH);
        for record in records {
            if self.enricher.process_into(record, &mut slot) {
                self.analyse(&mut slot, emit);
            }
        }
    }

    /// Hands each event of a replayed batch, analysed, to `emit`.
    pub fn process_events(&mut self, batch: Vec<Event>, emit: &mut impl FnMut(&mut Event)) {
        for mut event in batch {
            self.analyse(&mut event, emit);
        }
    }

    fn analyse(&mut self, event: &mut Event, emit: &mut impl FnMut(&mut Event)) {
        self.taps.record(event);
        let outcome = self.evaluator.analyze(event);
        if let Some(responder) = &mut self.responder {
            responder.respond_analyzed(event, &outcome);
        }
        self.taps.store(event);
        emit(event);
    }

    /// After each batch: hands it to the history and flushes the response logs.
    pub fn end_batch(&mut self) {
        self.taps.end_batch();
        if let Some(responder) = &mut self.responder {
            responder.flush();
        }
    }

    /// Once a second: expiring deny entries, the webhook's and the history's warnings, the
    /// stages' loss counts.
    pub fn every_second(&mut self) {
        if let Some(responder) = &mut self.responder {
            responder.tick();
        }
        self.taps.report();
        self.record_losses();
    }

    /// Copies the losses counted by the stages themselves into the shared counters.
    pub fn record_losses(&self) {
        self.enricher.record_losses(&self.losses);
        self.taps.record_losses(&self.losses);
        if let Some(responder) = &self.responder {
            self.losses
                .observe(Loss::WebhookQueueFull, responder.stats().webhook.dropped);
        }
    }
}
