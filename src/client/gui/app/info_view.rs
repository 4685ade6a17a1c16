//! The system-information panel and the live chart of the host shown.

use super::*;

impl App {
    pub(super) fn bind_info(&self) {
        let w = &self.inner.window;
        w.global::<ChartAdapter>()
            .on_resized(with_app!(self, move |app, width, height| {
                app.inner
                    .state
                    .borrow_mut()
                    .chart
                    .resize(f64::from(width), f64::from(height));
                app.refresh_chart();
            }));
        w.global::<InfoAdapter>()
            .on_refresh(with_app!(self, move |app| {
                let host = app.inner.state.borrow().shown_host;
                if let Some(host) = host {
                    app.fetch_info(host);
                }
            }));
    }

    pub(super) fn fetch_info(&self, index: usize) {
        let Some(host) = self.inner.state.borrow().hosts.fleet().host(index).cloned() else {
            return;
        };
        let updates = self.inner.updates.clone();
        self.inner.runtime.spawn(async move {
            let result = async {
                let client = host.client().await?;
                client.system_info().await
            }
            .await
            .map(Box::new)
            .map_err(|e| e.to_string());
            updates.push(Update::Info {
                host: index,
                result,
            });
        });
    }

    pub(super) fn watch_metrics(&self, index: usize) {
        let (host, stop, generation) = {
            let state = self.inner.state.borrow();
            let Some(host) = state.hosts.fleet().host(index).cloned() else {
                return;
            };
            (host, state.metrics_stop.clone(), state.metrics_generation)
        };
        let updates = self.inner.updates.clone();
        self.inner.runtime.spawn(async move {
            use futures::StreamExt;
            let stream = async {
                let client = host.client().await?;
                client.watch_metrics(Duration::from_secs(1), false).await
            };
            let mut samples = match stream.await {
                Ok(samples) => samples,
                Err(e) => {
                    updates.push(Update::Metrics {
                        generation,
                        sample: Err(e.to_string()),
                    });
                    return;
                }
            };
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    sample = samples.next() => match sample {
                        Some(sample) => updates.push(Update::Metrics {
                            generation,
                            sample: sample.map_err(|e| e.to_string()),
                        }),
                        None => return,
                    }
                }
            }
        });
    }

    pub(super) fn refresh_chart(&self) {
        let view = self.inner.state.borrow().chart.view();
        let chart = self.inner.window.global::<ChartAdapter>();
        chart.set_cpu_path(view.cpu_path.into());
        chart.set_memory_path(view.memory_path.into());
        chart.set_cpu_now(view.cpu_now.into());
        chart.set_memory_now(view.memory_now.into());
        let labels: Vec<SharedString> = view.time_labels.into_iter().map(Into::into).collect();
        chart.set_time_labels(ModelRc::new(VecModel::from(labels)));
    }
}
