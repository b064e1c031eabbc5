//! The few Graph calls the benchmark makes, as a real client makes them (plain reqwest).

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Api {
    http: Client,
    base: String,
}

/// A job and its document, on a printer.
#[derive(Clone, Debug)]
pub struct Job {
    pub path: String,
    pub document: String,
}

impl Api {
    /// A client of its own: its own connection pool, so `n` `Api`s make `n` connections.
    pub fn new(base: &str) -> Self {
        Api {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("reqwest client"),
            base: base.to_string(),
        }
    }

    async fn post(&self, path: &str, body: Value, want: StatusCode) -> anyhow::Result<Value> {
        let url = format!("{}/v1.0{path}", self.base);
        let resp = self.http.post(&url).json(&body).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status == want, "POST {path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn printer(&self) -> anyhow::Result<String> {
        let v = self
            .post(
                "/print/printers",
                json!({"displayName": "Bench printer"}),
                StatusCode::CREATED,
            )
            .await?;
        Ok(v["id"].as_str().context("printer id")?.to_string())
    }

    pub async fn job(&self, printer: &str) -> anyhow::Result<Job> {
        let path = format!("/print/printers/{printer}/jobs");
        let v = self
            .post(
                &path,
                json!({"configuration": {"copies": 1}}),
                StatusCode::CREATED,
            )
            .await?;
        Ok(Job {
            path: format!("{path}/{}", v["id"].as_str().context("job id")?),
            document: v["documents"][0]["id"]
                .as_str()
                .context("document id")?
                .to_string(),
        })
    }

    /// createUploadSession; returns the upload URL.
    pub async fn session(&self, job: &Job, size: u64) -> anyhow::Result<String> {
        let v = self
            .post(
                &format!(
                    "{}/documents/{}/createUploadSession",
                    job.path, job.document
                ),
                json!({"properties": {"documentName": "bench.pdf",
                                      "contentType": "application/pdf", "size": size}}),
                StatusCode::OK,
            )
            .await?;
        Ok(v["uploadUrl"].as_str().context("uploadUrl")?.to_string())
    }

    /// A new job on `printer` with an upload session of `size` bytes.
    pub async fn ready_upload(&self, printer: &str, size: u64) -> anyhow::Result<(Job, String)> {
        let job = self.job(printer).await?;
        let url = self.session(&job, size).await?;
        Ok((job, url))
    }

    /// PUTs `data` at `start`; expects 202, or 201 when it is the last missing piece.
    pub async fn put(&self, url: &str, start: u64, total: u64, data: Bytes) -> anyhow::Result<()> {
        let end = start + data.len() as u64 - 1;
        let resp = self
            .http
            .put(url)
            .header("Content-Range", format!("bytes {start}-{end}/{total}"))
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await?;
        let status = resp.status();
        if status != StatusCode::ACCEPTED && status != StatusCode::CREATED {
            bail!("PUT {start}-{end}/{total}: {status} {}", resp.text().await?);
        }
        resp.bytes().await?;
        Ok(())
    }

    /// The sum and count of one of the server's Prometheus summaries or histograms; `name`
    /// may carry its labels as the server prints them (`name{a="x",b="y"}`).
    pub async fn metric(&self, name: &str) -> anyhow::Result<(f64, f64)> {
        let (name, labels) = name.split_at(name.find('{').unwrap_or(name.len()));
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let value = |suffix: &str| -> anyhow::Result<f64> {
            let key = format!("{name}_{suffix}{labels} ");
            let line = text
                .lines()
                .find(|l| l.starts_with(&key))
                .with_context(|| format!("{key}in /metrics"))?;
            Ok(line[key.len()..].trim().parse()?)
        };
        Ok((value("sum")?, value("count")?))
    }

    pub async fn start(&self, job: &Job) -> anyhow::Result<()> {
        self.post(&format!("{}/start", job.path), json!({}), StatusCode::OK)
            .await
            .map(drop)
    }

    /// Follows `$value` and reads the whole download, discarding it; returns the byte count.
    pub async fn download(&self, job: &Job) -> anyhow::Result<u64> {
        let url = format!(
            "{}/v1.0{}/documents/{}/$value",
            self.base, job.path, job.document
        );
        let resp = self.http.get(&url).send().await?;
        ensure!(
            resp.status() == StatusCode::FOUND,
            "$value: {}",
            resp.status()
        );
        let location = resp
            .headers()
            .get("location")
            .context("Location")?
            .to_str()?
            .to_string();
        let resp = self.http.get(&location).send().await?;
        ensure!(
            resp.status() == StatusCode::OK,
            "download: {}",
            resp.status()
        );
        let mut body = resp.bytes_stream();
        let mut n = 0;
        while let Some(chunk) = body.next().await {
            n += chunk?.len() as u64;
        }
        Ok(n)
    }
}
