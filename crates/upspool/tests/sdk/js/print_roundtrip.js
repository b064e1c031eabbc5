// Prints files through upspool with Microsoft's JS Graph client (@microsoft/microsoft-graph-client
// 3.0.7), unchanged: only the base URL, customHosts and the token differ from a program that
// prints through Universal Print. Run by crates/upspool/tests/sdk_js.rs over upspool's HTTPS
// listener, with its generated loopback certificate trusted through NODE_EXTRA_CA_CERTS.
//
// Environment:
//   SDK_BASE_URL  e.g. https://127.0.0.1:PORT (no version: the client adds defaultVersion)
//   SDK_VERSION   v1.0 (default) or beta
//   SDK_TOKEN     a bearer token (`upspool token`)
//   SDK_SHARE_ID  the share to print to
// Arguments: the files to print, one job each.
//
// Prints one JSON object on stdout; any failure exits non-zero with the error on stderr.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const {
  Client,
  FileUpload,
  LargeFileUploadTask,
  PageIterator,
  ResponseType,
} = require("@microsoft/microsoft-graph-client");

const sha256 = (buf) => crypto.createHash("sha256").update(buf).digest("hex");

async function printFile(client, shareId, file) {
  const data = fs.readFileSync(file);
  const name = path.basename(file);
  const jobs = `/print/shares/${shareId}/jobs`;
  const out = { file: name, size: data.length };

  const job = await client.api(jobs).post({ configuration: { copies: 1 } });
  out.job = job.id;
  out.created_state = job.status.state;
  const docId = job.documents[0].id;
  out.document = docId;
  const docPath = `${jobs}/${job.id}/documents/${docId}`;

  // Starting before the upload is refused; the client throws a GraphError built from the
  // Graph error envelope.
  try {
    await client.api(`${jobs}/${job.id}/start`).post({});
    out.early_start = null;
  } catch (e) {
    out.early_start = { status: e.statusCode, code: e.code, message: e.message, requestId: e.requestId };
  }

  // A session cancelled through the task: the client marks it cancelled only on exactly 204.
  const payload = { properties: { documentName: name, contentType: "application/pdf", size: data.length } };
  const dropped = await LargeFileUploadTask.createUploadSession(client, `${docPath}/createUploadSession`, payload);
  const dropTask = new LargeFileUploadTask(client, new FileUpload(data, name, data.length), dropped);
  const cancelled = await dropTask.cancel();
  out.cancelled_session = { status: cancelled.status, isCancelled: dropped.isCancelled === true };

  // The upload session through the task's own helper, then its upload loop with the default
  // slice size (5 MiB). The file object needs its name and size given explicitly.
  const session = await LargeFileUploadTask.createUploadSession(client, `${docPath}/createUploadSession`, payload);
  out.session = { url: session.url, expiry: session.expiry.toISOString() };
  const progress = [];
  const task = new LargeFileUploadTask(client, new FileUpload(data, name, data.length), session, {
    uploadEventHandlers: { progress: (r) => progress.push([r.minValue, r.maxValue]) },
  });
  const result = await task.upload();
  out.upload = { progress, responseBody: result.responseBody, location: result.location };

  const back = await client.api(`${jobs}/${job.id}`).expand("documents").get();
  out.read_back = {
    id: back.id,
    state: back.status.state,
    context: back["@odata.context"],
    documents: back.documents,
  };

  // The same job through beta (per request; `defaultVersion: "beta"` does it for all).
  const beta = await client.api(`${jobs}/${job.id}`).version("beta").get();
  out.beta = { context: beta["@odata.context"], hasDisplayName: "displayName" in beta };

  out.start_status = await client.api(`${jobs}/${job.id}/start`).post({});
  const after = await client.api(`${jobs}/${job.id}`).get();
  out.status_after_start = { state: after.status.state, isFetchable: after.isFetchable };

  // $value answers 302 to a pre-authenticated https URL on the same host; fetch follows it.
  const content = Buffer.from(
    await client.api(`${docPath}/$value`).responseType(ResponseType.ARRAYBUFFER).get(),
  );
  out.download = { size: content.length, sha256: sha256(content), matches: sha256(content) === sha256(data) };
  return out;
}

async function main() {
  const base = process.env.SDK_BASE_URL;
  const token = process.env.SDK_TOKEN;
  const shareId = process.env.SDK_SHARE_ID;
  // customHosts takes bare host names: without it the client strips Authorization from every
  // request that does not go to a Microsoft Graph host.
  const client = Client.init({
    baseUrl: base,
    defaultVersion: process.env.SDK_VERSION || "v1.0",
    customHosts: new Set([new URL(base).hostname]),
    authProvider: (done) => done(null, token),
  });

  const shares = await client.api("/print/shares").get();
  const report = {
    shares: shares.value.map((s) => ({ id: s.id, displayName: s.displayName })),
    jobs: [],
  };
  for (const file of process.argv.slice(2)) {
    report.jobs.push(await printFile(client, shareId, file));
  }

  // The share's jobs, newest first, one per page: PageIterator follows @odata.nextLink.
  const first = await client.api(`/print/shares/${shareId}/jobs`).top(1).orderby("createdDateTime desc").get();
  const paged = [];
  await new PageIterator(client, first, (j) => { paged.push(j.id); return true; }).iterate();
  report.paged_job_ids = paged;
  console.log(JSON.stringify(report));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  console.error(JSON.stringify(e));
  process.exit(1);
});
