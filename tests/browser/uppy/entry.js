// The test page's script: the published Uppy packages, unmodified, configured
// with nothing but the service's `endpoint` and an auth header. tests/test_browser.py
// bundles this file with esbuild and calls the functions put on `window`.
import Uppy from "@uppy/core";
import AwsS3 from "@uppy/aws-s3";

const MiB = 1024 * 1024;

function bearer(token) {
  return { Authorization: `Bearer ${token}` };
}

async function fetchAsFile({ path, name, type }) {
  const response = await fetch(path);
  if (!response.ok) {
    throw new Error(`${path}: HTTP ${response.status}`);
  }
  return new File([await response.blob()], name, { type });
}

// What an app does after a single-request upload: Uppy's presigned POST goes
// to storage only, so the app asks the service to confirm the object.
async function confirmUpload(endpoint, token, fileKey) {
  const response = await fetch(`${endpoint}/uploads/confirm`, {
    method: "POST",
    headers: { ...bearer(token), "Content-Type": "application/json" },
    body: JSON.stringify({ file_key: fileKey }),
  });
  return { status: response.status, body: await response.json() };
}

// Upload `files` ([{path, name, type}], fetched from this page's origin) with Uppy.
window.uploadWithUppy = async ({ endpoint, token, files }) => {
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(AwsS3, {
    endpoint,
    headers: bearer(token),
    // Uppy's default sends only files above 100 MiB in parts; the test's
    // 20 MiB file must take the multipart path.
    shouldUseMultipart: (file) => file.size > 10 * MiB,
  });

  const confirmations = [];
  uppy.on("upload-success", (file, response) => {
    // A multipart upload ended with POST /s3/multipart/{id}/complete, which
    // the service answered after confirming the file: nothing left to do.
    if (file.s3Multipart?.uploadId) {
      return;
    }
    // Uppy passes on the POST policy's `key` field (the key the service chose).
    const key = response.body.key;
    confirmations.push(
      confirmUpload(endpoint, token, key).then((answer) => ({ name: file.name, key, ...answer })),
    );
  });

  for (const spec of files) {
    const data = await fetchAsFile(spec);
    uppy.addFile({ name: spec.name, type: spec.type, data, source: "test" });
  }
  const result = await uppy.upload();
  return {
    successful: result.successful.map((file) => ({
      name: file.name,
      key: file.s3Multipart?.key ?? null,
      multipart: Boolean(file.s3Multipart?.uploadId),
      uploadURL: file.uploadURL ?? null,
    })),
    failed: (result.failed ?? []).map((file) => ({ name: file.name, error: String(file.error) })),
    confirmed: await Promise.all(confirmations),
  };
};

// Start a multipart upload as `owner` (the request Uppy makes), then ask to
// sign its part 1 as `owner` and as `stranger`, and with a made-up upload id.
window.signPartAs = async ({ endpoint, owner, stranger }) => {
  const created = await fetch(`${endpoint}/s3/multipart`, {
    method: "POST",
    headers: { ...bearer(owner), "Content-Type": "application/json" },
    body: JSON.stringify({ filename: "private.pdf", type: "application/pdf", metadata: {} }),
  });
  const { uploadId, key } = await created.json();
  const query = `key=${encodeURIComponent(key)}`;
  const partUrl = (id) => `${endpoint}/s3/multipart/${encodeURIComponent(id)}/1?${query}`;
  const ask = async (url, token) => {
    const response = await fetch(url, { headers: bearer(token) });
    return { status: response.status, body: await response.json() };
  };
  const answers = {
    created: created.status,
    asStranger: await ask(partUrl(uploadId), stranger),
    madeUp: await ask(partUrl(`${uploadId}x`), owner),
    asOwner: await ask(partUrl(uploadId), owner),
  };
  const aborted = await fetch(`${endpoint}/s3/multipart/${encodeURIComponent(uploadId)}?${query}`, {
    method: "DELETE",
    headers: bearer(owner),
  });
  return { ...answers, aborted: aborted.status };
};
