//! A `metrics` recorder that keeps every counter, gauge and histogram by
//! name and labels, for tests to read back (`metrics.rs`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// A metric's name and labels, written `name{a=x,b=y}` with labels sorted.
pub fn written(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Level(Mutex<f64>);

impl GaugeFn for Level {
    fn increment(&self, value: f64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += value;
    }

    fn decrement(&self, value: f64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) -= value;
    }

    fn set(&self, value: f64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }
}

/// The recorder; clones share their metrics.
#[derive(Clone, Default)]
pub struct Recorded {
    counters: Arc<Mutex<BTreeMap<String, Arc<Cell>>>>,
    gauges: Arc<Mutex<BTreeMap<String, Arc<Level>>>>,
    histograms: Arc<Mutex<BTreeMap<String, Arc<Samples>>>>,
}

fn slot<T: Default>(map: &Mutex<BTreeMap<String, Arc<T>>>, key: &Key) -> Arc<T> {
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(written(key))
        .or_default()
        .clone()
}

impl Recorded {
    /// Every counter, `name{labels}` → value.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let map = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| (k.clone(), v.0.load(Ordering::Relaxed)))
            .collect()
    }

    /// Every gauge, `name{labels}` → value.
    pub fn gauges(&self) -> BTreeMap<String, f64> {
        let map = self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    *v.0.lock().unwrap_or_else(PoisonError::into_inner),
                )
            })
            .collect()
    }

    /// Every histogram, `name{labels}` → samples.
    pub fn histograms(&self) -> BTreeMap<String, Vec<f64>> {
        let map = self
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| {
                let samples = v.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
                (k.clone(), samples)
            })
            .collect()
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(slot(&self.counters, key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(slot(&self.gauges, key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(slot(&self.histograms, key))
    }
}
