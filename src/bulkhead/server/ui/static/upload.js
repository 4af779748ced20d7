// Bulkhead web UI: upload a release bundle with a progress bar (XMLHttpRequest upload events).
// A file of its own, not inline: the UI's Content-Security-Policy allows only this server's scripts.
// The server's answer is shown as text (never parsed into the page as markup).
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var bar = document.getElementById("upload-progress");
  var percent = document.getElementById("upload-percent");
  var result = document.getElementById("upload-result");
  var button = document.getElementById("upload-button");

  function show(text, ok, link) {
    result.textContent = "";
    var p = document.createElement("p");
    p.className = ok ? "ok" : "error";
    p.setAttribute("role", ok ? "status" : "alert");
    p.textContent = text;
    if (link) {
      var a = document.createElement("a");
      a.href = link;
      a.textContent = " Open the release";
      a.id = "uploaded-release";
      p.appendChild(a);
    }
    result.appendChild(p);
  }

  function answerText(xhr) {
    var doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
    var main = doc.querySelector("[role=alert]") || doc.querySelector("[role=status]") || doc.querySelector("main") || doc.body;
    var text = (main && main.textContent || "").replace(/\s+/g, " ").trim();
    return text || "the server answered " + xhr.status;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = document.getElementById("bundle").files[0];
    if (!file) {
      show("Choose a bundle file first.", false);
      return;
    }
    var compatible = document.getElementById("u-compatible").value.trim();
    var url = form.action + (compatible ? "?compatible=" + encodeURIComponent(compatible) : "");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var p = Math.round((100 * e.loaded) / e.total);
        bar.value = p;
        percent.textContent = p + " % sent";
      }
    });
    xhr.upload.addEventListener("load", function () {
      percent.textContent = "100 % sent; the server verifies the signature…";
    });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      var ok = xhr.status >= 200 && xhr.status < 300;
      percent.textContent = ok ? "done" : "refused";
      if (ok) bar.value = 100;
      show(answerText(xhr), ok, ok ? xhr.getResponseHeader("x-bulkhead-release") : null);
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      percent.textContent = "";
      show("The upload broke off (the connection to the server failed): try again.", false);
    });
    result.textContent = "";
    bar.hidden = false;
    bar.value = 0;
    percent.textContent = "0 % sent";
    button.disabled = true;
    xhr.send(file);
  });
})();
