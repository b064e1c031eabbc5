"""Prints files through upspool with Microsoft's Python Graph SDK, unchanged.

Run by crates/upspool/tests/sdk_python.rs. Only the base URL and the token differ from a program
that prints through Universal Print: the request builders of `msgraph-sdk` make every Graph
call and `msgraph-core`'s LargeFileUploadTask uploads, with its default slice size.

Environment:
  SDK_BASE_URL  e.g. http://127.0.0.1:PORT/v1.0 (the version segment included)
  SDK_TOKEN     a bearer token (`upspool token`)
  SDK_SHARE_ID  the share to print to
Arguments: the files to print, one job each.

Prints one JSON object on stdout: what the SDK returned at each step, for the test to check.
Any exception ends the program with a non-zero status and a traceback on stderr.
"""

import asyncio
import hashlib
import json
import os
import sys

from kiota_abstractions.authentication.api_key_authentication_provider import (
    ApiKeyAuthenticationProvider,
    KeyLocation,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.print_job import PrintJob
from msgraph.generated.models.print_job_configuration import PrintJobConfiguration
from msgraph.generated.models.print_document_upload_properties import (
    PrintDocumentUploadProperties,
)
from msgraph.generated.print.shares.item.jobs.item.documents.item.create_upload_session.create_upload_session_post_request_body import (
    CreateUploadSessionPostRequestBody,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.print.shares.item.jobs.item.print_job_item_request_builder import (
    PrintJobItemRequestBuilder,
)
from msgraph.generated.print.shares.item.jobs.jobs_request_builder import JobsRequestBuilder
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_core.tasks.large_file_upload import LargeFileUploadTask
from msgraph_core.tasks.page_iterator import PageIterator


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def enum_value(v):
    return getattr(v, "value", v)


def document_view(d):
    return {
        "id": d.id,
        "displayName": d.display_name,
        "contentType": d.content_type,
        "size": d.size,
        "uploadedDateTime": d.uploaded_date_time.isoformat() if d.uploaded_date_time else None,
    }


async def print_file(client, adapter, share_id, path):
    share = client.print.shares.by_printer_share_id(share_id)
    out = {"file": os.path.basename(path), "size": os.path.getsize(path)}

    # Create a job on the share; Graph answers with its one (empty) document.
    job = await share.jobs.post(PrintJob(configuration=PrintJobConfiguration(copies=1)))
    out["job"] = job.id
    out["created_state"] = enum_value(job.status.state)
    doc_id = job.documents[0].id
    out["document"] = doc_id
    job_rb = share.jobs.by_print_job_id(job.id)
    doc_rb = job_rb.documents.by_print_document_id(doc_id)

    # Starting before the upload is refused; the SDK turns the Graph error into an ODataError.
    try:
        await job_rb.start.post()
        out["early_start"] = None
    except ODataError as e:
        out["early_start"] = {
            "status": e.response_status_code,
            "code": e.error.code,
            "message": e.error.message,
            "request_id": e.error.inner_error.request_id if e.error.inner_error else None,
        }

    # The upload session, through the SDK's request builder.
    body = CreateUploadSessionPostRequestBody(
        properties=PrintDocumentUploadProperties(
            document_name=os.path.basename(path),
            content_type="application/pdf",
            size=out["size"],
        )
    )
    session = await doc_rb.create_upload_session.post(body)
    out["session"] = {
        "uploadUrl": session.upload_url,
        "expirationDateTime": session.expiration_date_time.isoformat(),
        "nextExpectedRanges": session.next_expected_ranges,
    }

    # The SDK's LargeFileUploadTask with its default slice size (5 MiB), on the same adapter.
    progress = []
    with open(path, "rb") as stream:
        task = LargeFileUploadTask(upload_session=session, request_adapter=adapter, stream=stream)
        result = await task.upload(lambda r: progress.append([int(r[0]), int(r[1])]))
    replay = result.item_response
    out["upload"] = {
        "succeeded": result.upload_succeeded,
        "location": result.location,
        "progress": progress,
        # The reply to the task's final replay of its last range (raw bytes).
        "replay_response": json.loads(replay) if replay else None,
    }

    # Read the job back with its document.
    expand = RequestConfiguration(
        query_parameters=PrintJobItemRequestBuilder.PrintJobItemRequestBuilderGetQueryParameters(
            expand=["documents"]
        )
    )
    uploaded = await job_rb.get(request_configuration=expand)
    out["read_back"] = {
        "id": uploaded.id,
        "state": enum_value(uploaded.status.state),
        "documents": [document_view(d) for d in uploaded.documents or []],
    }

    # Start it and read its status.
    started = await job_rb.start.post()
    out["start_status"] = {
        "state": enum_value(started.state),
        "description": started.description,
        "details": [enum_value(d) for d in started.details or []],
    }
    after = await job_rb.get()
    out["status_after_start"] = {
        "state": enum_value(after.status.state),
        "isFetchable": after.is_fetchable,
    }

    # Download through $value (the SDK follows the redirect) and compare.
    content = await doc_rb.content.get()
    out["download"] = {
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "matches": hashlib.sha256(content).hexdigest() == sha256_file(path),
    }
    return out


async def main():
    base_url = os.environ["SDK_BASE_URL"]
    token = os.environ["SDK_TOKEN"]
    share_id = os.environ["SDK_SHARE_ID"]

    # §8.1 of the SDK notes: a static bearer token, and the adapter's base URL set before the
    # client is built.
    auth = ApiKeyAuthenticationProvider(KeyLocation.Header, f"Bearer {token}", "Authorization")
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = base_url
    client = GraphServiceClient(request_adapter=adapter)

    shares = await client.print.shares.get()
    report = {
        "shares": [{"id": s.id, "displayName": s.display_name} for s in shares.value or []],
        "jobs": [],
    }
    # The share's printer, through the generated navigation.
    printer = await client.print.shares.by_printer_share_id(share_id).printer.get()
    report["share_printer"] = {"id": printer.id, "displayName": printer.display_name}
    for path in sys.argv[1:]:
        report["jobs"].append(await print_file(client, adapter, share_id, path))

    # The share's jobs, newest first, one per page: the SDK's PageIterator follows
    # @odata.nextLink.
    first = await client.print.shares.by_printer_share_id(share_id).jobs.get(
        request_configuration=RequestConfiguration(
            query_parameters=JobsRequestBuilder.JobsRequestBuilderGetQueryParameters(
                top=1, orderby=["createdDateTime desc"]
            )
        )
    )
    paged = []
    await PageIterator(first, adapter).iterate(lambda j: paged.append(j.id) or True)
    report["paged_job_ids"] = paged
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
