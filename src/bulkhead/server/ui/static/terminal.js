// The web terminal of a remote session (docs/adr/0011): xterm.js on a WebSocket to the session's connection.
// Binary messages are the terminal's bytes both ways; text messages JSON control ({"resize"}, {"exit"}, {"error"}).
(function () {
  "use strict";
  const box = document.getElementById("terminal");
  const status = document.getElementById("terminal-status");
  if (!box || !window.Terminal) return;
  const term = new window.Terminal({ cursorBlink: true, convertEol: false, scrollback: 5000 });
  const fit = window.FitAddon ? new window.FitAddon.FitAddon() : null;
  if (fit) term.loadAddon(fit);
  term.open(box);
  if (fit) fit.fit();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(scheme + "//" + location.host + box.dataset.connect);
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  const resize = () => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [term.cols, term.rows] }));
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") {
      term.write(new Uint8Array(ev.data));
      return;
    }
    let msg = {};
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if ("joined" in msg) {
      status.textContent = "Connected.";
      box.dataset.state = "joined";
      resize();
      term.focus();
    } else if ("exit" in msg) {
      status.textContent = "The shell exited with status " + msg.exit + ".";
      box.dataset.state = "exited";
    } else if ("error" in msg) {
      status.textContent = msg.error;
      box.dataset.state = "error";
    }
  };
  ws.onclose = () => {
    if (box.dataset.state === "joined") status.textContent = "The session ended.";
  };
  term.onData((data) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
  });
  term.onResize(resize);
  window.addEventListener("resize", () => { if (fit) fit.fit(); });
})();
