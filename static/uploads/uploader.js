// Direct Uploads — the portal's uploader, as ES modules with no build step:
//   api.js     the JSON API and the one retry rule
//   queue.js   one concurrency limit for the parts of every file
//   upload.js  one file's upload (state machine, checksums, resume, repair); no DOM
//   view.js    the rows and the overall line, painted once per animation frame
// This module wires them to the page: the chooser, drops, "resume" buttons of unfinished uploads.
// It speaks the same API as every client, with the portal's session cookie and CSRF header;
// URLs and limits come from the page (json_script), never written here.

import { Api } from "./api.js";
import { Queue } from "./queue.js";
import { formatBytes } from "./units.js";
import { State, Upload } from "./upload.js";
import { View } from "./view.js";

export { State, Upload } from "./upload.js";

const sameFile = (a, b) =>
  a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;

export function mount(root) {
  const config = JSON.parse(document.getElementById("uploader-settings").textContent);
  const input = root.querySelector("#file-input");
  const zone = root.querySelector("#dropzone");
  const notice = root.querySelector("#uploader-notice");
  const api = new Api(config.api, document.body.dataset.csrfToken || "");
  const queue = new Queue({ limit: config.concurrency });
  const view = new View({
    list: root.querySelector("#uploads"),
    template: document.getElementById("upload-row-template"),
    summary: root.querySelector("#overall"),
    fileUrl: config.fileUrl,
  });
  view.onremove = (upload) => {
    uploads.splice(uploads.indexOf(upload), 1);
    queue.remove(upload);
  };
  root.querySelector("#overall [data-action=clear]").addEventListener("click", () => view.clearCompleted());
  // data-checksums="off" (UPLOADS_BROWSER_CHECKSUMS=0): new uploads send no part checksums.
  const checksums = root.dataset.checksums !== "off";
  const uploads = [];
  let resumeTarget = null;

  const tell = (text) => {
    notice.textContent = text;
  };

  const add = (file, resumeId = null) => {
    // The same file twice would be two uploads racing over one resume record.
    const twin = uploads.find((u) => sameFile(u.file, file) && u.state !== State.CANCELLED);
    if (twin) {
      tell(`“${file.name}” is already in the list.`);
      return null;
    }
    const upload = new Upload(file, { api, queue, resumeId, checksums, stallMs: config.stallMs });
    uploads.push(upload);
    view.add(upload);
    upload.addEventListener("state", ({ detail }) => {
      if (detail.state === State.DONE) {
        document.querySelector(`[data-unfinished-id="${detail.record.id}"]`)?.remove();
      }
    });
    upload.start();
    return upload;
  };

  const addAll = (files) => {
    tell("");
    for (const file of files) add(file);
  };

  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";
    if (!resumeTarget) {
      addAll(files);
      return;
    }
    const target = resumeTarget;
    resumeTarget = null;
    const [file, ...others] = files;
    if (file.size !== target.size) {
      const note = document.querySelector(`[data-unfinished-id="${target.id}"] .message`);
      if (note) {
        note.textContent = `“${file.name}” is not the file this upload started with (${formatBytes(target.size)}).`;
      }
    } else {
      add(file, target.id);
    }
    addAll(others);
  });

  // The chooser closed without a pick: the next pick is a new upload, not that resume.
  input.addEventListener("cancel", () => {
    resumeTarget = null;
  });

  zone.addEventListener("click", (event) => {
    if (event.target === zone || !event.target.closest("label, input")) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  // Files dragged anywhere over the page: an overlay says where they go, a drop anywhere adds them.
  const overlay = document.getElementById("drop-overlay");
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  let depth = 0; // dragenter/dragleave fire for every element crossed
  document.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth++;
    overlay.hidden = false;
    zone.classList.add("over");
  });
  document.addEventListener("dragover", (event) => {
    if (carriesFiles(event)) event.preventDefault();
  });
  const hide = () => {
    depth = 0;
    overlay.hidden = true;
    zone.classList.remove("over");
  };
  document.addEventListener("dragleave", () => {
    if (--depth <= 0) hide();
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    hide();
    addAll(event.dataTransfer.files);
  });

  root.addEventListener("click", (event) => {
    const trigger = event.target.closest("[data-resume-id]");
    if (!trigger) return;
    resumeTarget = { id: trigger.dataset.resumeId, size: Number(trigger.dataset.size) };
    input.click();
  });

  window.addEventListener("beforeunload", (event) => {
    if (uploads.some((u) => u.busy)) event.preventDefault();
  });
  return { uploads, add, queue, view };
}

const root = document.querySelector("#uploader");
if (root) window.directUploads = mount(root);
