// pixpipe's browser upload, an ES module with no build step:
//
//   import { upload } from "https://pixpipe.example/static/upload.js";
//   const result = await upload(file, { key: "users/42/photo.jpg", grant,
//                                       onProgress: (sent, total) => bar.value = sent / total });
//
// It sends the file straight to where a presigned upload grant says (POST /v1/uploads),
// with XMLHttpRequest, whose upload events give the progress (fetch has none):
// - pixpipe's own URL on local stores: a PUT of the file, with the grant's Content-Type;
// - S3's presigned POST: a multipart form, the grant's fields first, then the file.
//
// The grant: best made by your backend (Python: `Client.presign(...).to_json()`) and handed
// to the page, so the API key never reaches a browser. With `apiKey` (trusted pages only: an
// operator's tool) the module asks for the grant itself; with neither, it asks without a key
// (a same-origin proxy that adds one). A grant binds the key, the type and the exact length,
// and is good for one upload. Cross-origin use needs CORS on the API and on the bucket
// (progress events make the browser send a preflight).
//
// Resolves to { key, status, body }: `body` is pixpipe's answer on local stores
// ({key, state, original_url, variants}), `null` when the store itself answered (S3); then
// watch GET /v1/images/{key}/events for the variants. Rejects with an `UploadError`
// (status, detail, kind) for an answer that is not 2xx, status 0 for a network failure.

export class UploadError extends Error {
  constructor(status, detail, kind = null) {
    super(status ? `${status}${kind ? ` ${kind}` : ""}: ${detail}` : String(detail));
    this.name = "UploadError";
    this.status = status;
    this.detail = detail;
    this.kind = kind;
  }
}

const TYPES = {
  jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp",
  gif: "image/gif", avif: "image/avif", tif: "image/tiff", tiff: "image/tiff",
  heic: "image/heic", heif: "image/heif", svg: "image/svg+xml", pdf: "application/pdf",
};

function typeOf(file, given) {
  if (given) return given;
  if (file.type) return file.type;
  const ext = (file.name || "").split(".").pop().toLowerCase();
  return TYPES[ext] || "application/octet-stream";
}

// The API's errors are {"detail", "kind"}; S3's are XML, kept as the detail.
function problem(status, text, statusText) {
  try {
    const body = JSON.parse(text);
    return new UploadError(status, body.detail ?? text, body.kind ?? null);
  } catch {
    return new UploadError(status, text || statusText);
  }
}

/** Ask pixpipe for a grant to upload `file` to `key` (POST /v1/uploads). */
export async function requestGrant(file, { key, apiKey, baseUrl = "", contentType, expiresIn }) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const body = { key, content_type: typeOf(file, contentType), content_length: file.size };
  if (expiresIn) body.expires_in = expiresIn;
  const response = await fetch(`${baseUrl}/v1/uploads`, {
    method: "POST", headers, body: JSON.stringify(body),
  });
  if (!response.ok) throw problem(response.status, await response.text(), response.statusText);
  return response.json();
}

function send(grant, file, contentType, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(grant.method, grant.url);
    let body = file;
    if (grant.method === "POST") {
      body = new FormData(); // S3 reads the policy's fields before the file: fields first
      for (const [name, value] of Object.entries(grant.fields || {})) body.append(name, value);
      body.append("file", file);
    } else {
      for (const [name, value] of Object.entries(grant.headers || {})) {
        xhr.setRequestHeader(name, value);
      }
      const named = Object.keys(grant.headers || {}).map((name) => name.toLowerCase());
      if (!named.includes("content-type")) xhr.setRequestHeader("Content-Type", contentType);
    }
    if (onProgress) {
      xhr.upload.addEventListener("progress", (event) => {
        onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
      });
    }
    xhr.addEventListener("load", () => {
      if (xhr.status < 200 || xhr.status >= 300) {
        reject(problem(xhr.status, xhr.responseText, xhr.statusText));
        return;
      }
      const json = (xhr.getResponseHeader("Content-Type") || "").startsWith("application/json");
      try {
        resolve({ status: xhr.status, body: json ? JSON.parse(xhr.responseText) : null });
      } catch {
        resolve({ status: xhr.status, body: null }); // stored; only its answer was not JSON
      }
    });
    xhr.addEventListener("error", () => {
      reject(new UploadError(0, `upload to ${grant.url} failed (the network, or CORS)`));
    });
    xhr.addEventListener("abort", () => reject(new DOMException("upload aborted", "AbortError")));
    if (signal) {
      // Aborted before sending: xhr.abort() would fire no event, so settle here.
      if (signal.aborted) { reject(new DOMException("upload aborted", "AbortError")); return; }
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(body);
  });
}

/**
 * Upload `file` (a File or Blob) to `key`, straight to where its grant says.
 * Options: key (required), grant (from your backend) or apiKey, baseUrl (default: this
 * origin), contentType (default: the file's type, else from its name), expiresIn (seconds,
 * when asking for the grant), onProgress(sentBytes, totalBytes), signal (an AbortSignal).
 */
export async function upload(file, options = {}) {
  const { key, onProgress, signal } = options;
  if (!key) throw new TypeError("upload: options.key is required (where the original will live)");
  const contentType = typeOf(file, options.contentType);
  const grant = options.grant || (await requestGrant(file, { ...options, contentType }));
  const { status, body } = await send(grant, file, contentType, onProgress, signal);
  return { key, status, body };
}
