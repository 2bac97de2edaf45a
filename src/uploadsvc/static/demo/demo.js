// uploadsvc demo page: files go from this browser straight to object storage
// through presigned URLs; the API only signs, completes and confirms.
// Plain JS on purpose (no build step, no CDN). Every string that comes from a
// user, a file or a server is put into the page with textContent, never as HTML.
"use strict";

const MiB = 1024 * 1024;
// Files above this size go up in parts (POST /v1/uploads/multipart): a failed
// part costs one part to send again, not the whole file.
const MULTIPART_THRESHOLD = 10 * MiB;
// Parts of one file in flight at once.
const PARALLEL_PARTS = 3;
// Tries of one PUT (a part, or a whole small file) before the upload fails.
const MAX_ATTEMPTS = 4;
// Wait before a retry; doubled after each failed try (0.5 s, 1 s, 2 s).
const FIRST_BACKOFF_MS = 500;
const TOKEN_KEY = "uploadsvc.demo.token";

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// A PUT to storage failed; status 0 means the browser saw no answer (network
// error, or an answer without CORS headers, which the browser hides).
class StorageError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// --- the API -------------------------------------------------------------

function currentToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${currentToken()}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`The service cannot be reached (${err.message}).`, 0);
  }
  if (response.status === 204) {
    return null;
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(problemText(data, response.status), response.status, data?.code);
  }
  return data;
}

// The words of a problem+json answer (RFC 9457): `detail`, and for a
// validation error the first field's message.
function problemText(problem, status) {
  if (!problem || typeof problem !== "object") {
    return `The service answered HTTP ${status}.`;
  }
  let text = String(problem.detail || problem.title || `HTTP ${status}`);
  const first = Array.isArray(problem.errors) ? problem.errors[0] : null;
  if (first && first.msg) {
    text += ` (${first.msg})`;
  }
  return text;
}

// --- storage -------------------------------------------------------------

// PUT a Blob to a presigned URL with exactly the signed headers; resolves to
// the ETag. XMLHttpRequest, because fetch() reports no upload progress.
function storagePut(url, body, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers || {})) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener("progress", (event) => onProgress(event.loaded));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(body.size);
        resolve(xhr.getResponseHeader("ETag"));
      } else {
        reject(new StorageError(`Storage refused the upload: ${storageMessage(xhr)}`, xhr.status));
      }
    });
    xhr.addEventListener("error", () => {
      reject(new StorageError("The upload to storage was interrupted.", 0));
    });
    xhr.send(body);
  });
}

// S3 explains a refusal in XML (<Error><Message>...); parsing XML runs nothing.
function storageMessage(xhr) {
  try {
    const doc = new DOMParser().parseFromString(xhr.responseText, "application/xml");
    const message = doc.querySelector("Error > Message");
    if (message && message.textContent) {
      return `${message.textContent} (HTTP ${xhr.status})`;
    }
  } catch {
    // not XML: fall through
  }
  return `HTTP ${xhr.status}`;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A URL is renewed when storage refused it (403: expired, or its signature no
// longer holds) or when its lifetime is over by our own clock.
function needsFreshUrl(err, target) {
  return err.status === 403 || Date.now() >= target.expiresAt;
}

// Try `send` up to MAX_ATTEMPTS times with growing pauses; between tries
// `beforeRetry(err)` may fetch a fresh URL. Only storage failures are retried:
// an API error (401, 404, 422...) will not go away by itself.
async function withRetries(send, beforeRetry) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await send(attempt);
    } catch (err) {
      if (!(err instanceof StorageError) || attempt >= MAX_ATTEMPTS) {
        throw err;
      }
      await sleep(FIRST_BACKOFF_MS * 2 ** (attempt - 1));
      await beforeRetry(err);
    }
  }
}

async function sha256Base64(blob) {
  // crypto.subtle exists only in secure contexts (https, or localhost).
  if (!globalThis.crypto?.subtle) {
    return undefined;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  return btoa(String.fromCharCode(...digest));
}

// Browsers leave a file's type empty when the system does not know its
// extension (.md and .log, often): the text types the service takes are named
// by extension here. Confirm still checks the bytes.
const TEXT_TYPES_BY_EXTENSION = {
  md: "text/markdown",
  markdown: "text/markdown",
  csv: "text/csv",
  json: "application/json",
  log: "text/plain",
  txt: "text/plain",
};

function declaredType(file) {
  // The service checks the type against the purpose and, on confirm, the magic bytes.
  if (file.type) {
    return file.type;
  }
  const dot = file.name.lastIndexOf(".");
  const extension = dot > 0 ? file.name.slice(dot + 1).toLowerCase() : "";
  return TEXT_TYPES_BY_EXTENSION[extension] || "application/octet-stream";
}

// --- one small file: one PUT -----------------------------------------------

async function uploadSingle(file, purpose, view) {
  view.setStatus("Hashing…");
  // Declared, so storage itself refuses other bytes (x-amz-checksum-sha256).
  const sha256 = await sha256Base64(file);
  view.setStatus("Asking for an upload URL…");
  const grant = await api("POST", "/v1/uploads/request-url", {
    filename: file.name,
    content_type: declaredType(file),
    size: file.size,
    sha256,
    purpose,
  });
  let target = {
    url: grant.upload_url,
    headers: grant.headers,
    expiresAt: Date.parse(grant.expires_at),
  };
  view.setStatus("Uploading to storage…");
  await withRetries(
    async (attempt) => {
      try {
        await storagePut(target.url, file, target.headers, (sent) => view.setProgress(sent));
      } catch (err) {
        // If-None-Match: * refuses a second write of the key (412): an earlier
        // try did arrive and only its answer was lost. Confirm will check it.
        if (!(attempt > 1 && err.status === 412)) {
          throw err;
        }
      }
    },
    async (err) => {
      view.setProgress(0);
      if (needsFreshUrl(err, target)) {
        const fresh = await api("POST", `/v1/uploads/${grant.upload_id}/url`);
        target = { url: fresh.upload_url, headers: fresh.headers, expiresAt: Date.parse(fresh.expires_at) };
      }
    },
  );
  view.setStatus("Checking what storage received…");
  return api("POST", "/v1/uploads/confirm", { file_key: grant.file_key });
}

// --- one large file: parts ------------------------------------------------

async function uploadMultipart(file, purpose, view) {
  view.setStatus("Starting a multipart upload…");
  const started = await api("POST", "/v1/uploads/multipart", {
    filename: file.name,
    content_type: declaredType(file),
    size: file.size,
    purpose,
  });
  const id = started.upload_id;
  const expiresAt = Date.parse(started.expires_at);
  const pending = started.parts.map((part) => ({ ...part, expiresAt }));
  const sentByPart = new Map();
  const etags = new Map();
  let failed = false;

  const showProgress = () => {
    let sent = 0;
    for (const bytes of sentByPart.values()) {
      sent += bytes;
    }
    view.setProgress(sent);
  };

  async function uploadPart(part) {
    const start = (part.part_number - 1) * started.part_size;
    const blob = file.slice(start, start + started.part_size);
    let target = part;
    const onProgress = (sent) => {
      sentByPart.set(part.part_number, sent);
      showProgress();
    };
    const etag = await withRetries(
      () => storagePut(target.url, blob, target.headers, onProgress),
      async (err) => {
        onProgress(0);
        if (needsFreshUrl(err, target)) {
          const fresh = await api("POST", `/v1/uploads/${id}/parts/urls`, {
            part_numbers: [part.part_number],
          });
          target = { ...fresh.parts[0], expiresAt: Date.parse(fresh.expires_at) };
        }
      },
    );
    if (!etag) {
      throw new Error("Storage did not show the part's ETag: its CORS rules must expose ETag (uploadsvc storage init).");
    }
    etags.set(part.part_number, etag);
  }

  // A few workers take parts from one queue; after a failure they take no more.
  async function worker() {
    while (!failed && pending.length > 0) {
      try {
        await uploadPart(pending.shift());
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }

  view.setStatus(`Uploading ${started.parts.length} parts to storage…`);
  const workers = Array.from({ length: Math.min(PARALLEL_PARTS, pending.length) }, worker);
  const results = await Promise.allSettled(workers);
  const rejected = results.find((result) => result.status === "rejected");
  if (rejected) {
    // Free what storage holds of this upload; the part's error is what counts.
    api("DELETE", `/v1/uploads/${id}`).catch(() => {});
    throw rejected.reason;
  }
  view.setStatus("Joining the parts and checking the file…");
  const parts = [...etags.entries()]
    .sort(([a], [b]) => a - b)
    .map(([part_number, etag]) => ({ part_number, etag }));
  return api("POST", `/v1/uploads/${id}/complete`, { parts });
}

// --- the page ---------------------------------------------------------------

function formatSize(bytes) {
  if (bytes >= MiB) {
    return `${(bytes / MiB).toFixed(1)} MiB`;
  }
  if (bytes >= 1024) {
    return `${(bytes / 1024).toFixed(1)} KiB`;
  }
  return `${bytes} B`;
}

// One row of the upload list: name, progress bar, status line.
function uploadView(file) {
  const item = document.createElement("li");
  item.dataset.state = "waiting";
  const name = document.createElement("span");
  name.textContent = `${file.name} (${formatSize(file.size)})`;
  const progress = document.createElement("progress");
  progress.max = file.size || 1;
  progress.value = 0;
  progress.setAttribute("aria-label", `Upload of ${file.name}`);
  const status = document.createElement("p");
  status.className = "status";
  status.setAttribute("role", "status");
  status.textContent = "Waiting…";
  item.append(name, progress, status);
  $("uploads").append(item);
  return {
    item,
    setProgress(sent) {
      progress.value = Math.min(sent, progress.max);
    },
    setStatus(text, state = "uploading") {
      status.textContent = text;
      item.dataset.state = state;
      item.className = state;
    },
  };
}

async function uploadFiles(files, purpose) {
  const views = files.map((file) => [file, uploadView(file)]);
  // One file after another: each gets the whole link, and the bars read in order.
  for (const [file, view] of views) {
    try {
      const upload = file.size > MULTIPART_THRESHOLD ? uploadMultipart : uploadSingle;
      const confirmed = await upload(file, purpose, view);
      view.setProgress(file.size);
      view.setStatus(`Confirmed (${formatSize(confirmed.size_bytes)}, ${confirmed.content_type}).`, "done");
    } catch (err) {
      view.setStatus(`Failed: ${err.message}`, "failed");
    }
  }
}

// An image's preview: its icon variant, once the background job has made it
// (asked again every half second for a while; nothing for other files).
function previewCell(file) {
  const cell = document.createElement("td");
  if (!file.content_type.startsWith("image/")) return cell;
  const img = document.createElement("img");
  img.className = "thumb";
  img.alt = `Preview of ${file.filename}`;
  img.hidden = true;
  cell.append(img);
  showThumbnail(file.file_id, img);
  return cell;
}

async function showThumbnail(fileId, img) {
  const path = `/v1/files/${encodeURIComponent(fileId)}/variants`;
  for (let attempt = 0; attempt < 20; attempt += 1) {
    let items;
    try {
      ({ items } = await api("GET", path));
    } catch {
      return;
    }
    const ready = ["icon", "small"]
      .map((name) => items.find((v) => v.name === name && v.status === "ready" && v.download_url))
      .find(Boolean);
    if (ready) {
      img.src = ready.download_url;
      img.hidden = false;
      return;
    }
    if (!items.some((v) => v.status === "pending")) return; // none, or all failed
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function fileRow(file) {
  const row = document.createElement("tr");
  row.append(previewCell(file));
  const cells = [
    file.filename,
    file.content_type,
    formatSize(file.size_bytes),
    new Date(file.confirmed_at || file.created_at).toLocaleString(),
  ];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  const cell = document.createElement("td");
  const link = document.createElement("a");
  const path = `/v1/files/${encodeURIComponent(file.file_id)}/download`;
  // A plain navigation cannot send the bearer token: the click asks the API
  // for a short-lived storage URL and goes there.
  link.href = `${path}?redirect=true`;
  link.textContent = "Download";
  link.setAttribute("aria-label", `Download ${file.filename}`);
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    try {
      const { download_url } = await api("GET", path);
      window.location.assign(download_url);
    } catch (err) {
      $("files-status").textContent = `Download failed: ${err.message}`;
    }
  });
  cell.append(link);
  row.append(cell);
  return row;
}

async function refreshFiles() {
  const status = $("files-status");
  if (!currentToken()) {
    status.textContent = "Sign in to see your files.";
    $("file-rows").replaceChildren();
    return;
  }
  status.textContent = "Loading…";
  try {
    const page = await api("GET", "/v1/files?limit=50");
    $("file-rows").replaceChildren(...page.items.map(fileRow));
    status.textContent = page.items.length ? `${page.items.length} file(s).` : "No files yet.";
  } catch (err) {
    status.textContent = `Cannot list your files: ${err.message}`;
  }
}

// The token's `sub`, shown so the user sees who they are signed in as. Only
// decoded for display: the service is what checks the token.
function subjectOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub;
  } catch {
    return undefined;
  }
}

function showSignedIn() {
  const token = currentToken();
  const sub = token ? subjectOf(token) : undefined;
  $("token-status").textContent = token
    ? `Signed in${sub ? ` as ${sub}` : ""} (token kept for this tab only).`
    : "Not signed in. The token is kept for this tab only (sessionStorage).";
}

function setUp() {
  $("token").value = currentToken();
  showSignedIn();

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    showSignedIn();
    refreshFiles();
  });
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    showSignedIn();
    refreshFiles();
  });

  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    $("files").files = event.dataTransfer.files;
  });

  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = [...$("files").files];
    if (!currentToken()) {
      $("token-status").textContent = "Paste a token first.";
      $("token").focus();
      return;
    }
    if (files.length === 0) {
      $("files").focus();
      return;
    }
    const button = $("upload-button");
    button.disabled = true;
    try {
      await uploadFiles(files, $("purpose").value);
      $("files").value = "";
    } finally {
      button.disabled = false;
    }
    await refreshFiles();
  });
  $("refresh-files").addEventListener("click", refreshFiles);

  refreshFiles();
}

setUp();
