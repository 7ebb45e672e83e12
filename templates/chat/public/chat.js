// Browser client of the chat template: one WebSocket to the page's own host.
// Query parameters of the page (?name=ann&room=lobby) fill the form and join at once.
"use strict";

const statusLine = document.getElementById("status");
const joinForm = document.getElementById("join-form");
const nameInput = document.getElementById("name");
const roomInput = document.getElementById("room");
const joinButton = document.getElementById("join-button");
const leaveButton = document.getElementById("leave-button");
const messageList = document.getElementById("messages");
const sendForm = document.getElementById("send-form");
const textInput = document.getElementById("text");
const sendButton = document.getElementById("send-button");

let socket = null;
let myName = "";

function setStatus(text, state) {
  statusLine.textContent = text;
  statusLine.className = state || "";
}

function setConnected(connected) {
  textInput.disabled = !connected;
  sendButton.disabled = !connected;
  leaveButton.disabled = socket === null;
  joinButton.disabled = socket !== null;
  nameInput.disabled = socket !== null;
  roomInput.disabled = socket !== null;
  if (connected) textInput.focus();
}

// Every line is built with textContent, so message text is never parsed as HTML.
function addLine(parts, className) {
  const item = document.createElement("li");
  if (className) item.className = className;
  for (const [partClass, text] of parts) {
    const span = document.createElement("span");
    span.className = partClass;
    span.textContent = text;
    item.append(span);
  }
  messageList.append(item);
  messageList.scrollTop = messageList.scrollHeight;
  return item;
}

function addNotice(text) {
  addLine([["text", text]], "notice");
}

function showMessage(message) {
  const time = new Date(message.at).toLocaleTimeString();
  const item = addLine(
    [["time", time], ["from", message.from], ["text", message.text]],
    message.from === myName ? "message own" : "message",
  );
  item.dataset.from = message.from;
}

function handleIncoming(event) {
  let message;
  try {
    message = JSON.parse(event.data);
  } catch {
    addNotice(`Unexpected text from the server: ${event.data}`);
    return;
  }
  if (message && typeof message.text === "string" && "from" in message) {
    showMessage(message);
  } else if (message && message.error) {
    addNotice(`Error: ${message.error}`);
  } else if (message && message.message === "Too Many Requests") {
    addNotice("The sandbox's rate limit dropped a message; wait a moment and send it again.");
  } else {
    addNotice(`Unexpected message from the server: ${event.data}`);
  }
}

function join(name, room) {
  myName = name || "anonymous";
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams();
  if (name) query.set("name", name);
  if (room) query.set("room", room);
  // Keep the choice in the page address, so a reload joins the same room.
  history.replaceState(null, "", `${location.pathname}?${query}`);

  const url = `${scheme}//${location.host}/?${query}`;
  setStatus(`Connecting to ${url} ...`);
  socket = new WebSocket(url);
  let opened = false;
  setConnected(false);

  socket.addEventListener("open", () => {
    opened = true;
    setStatus(`Connected as ${myName} in room ${room || "lobby"}`, "connected");
    setConnected(true);
  });
  socket.addEventListener("message", handleIncoming);
  socket.addEventListener("close", (event) => {
    socket = null;
    setConnected(false);
    if (!opened) {
      // Browsers hide the HTTP status of a rejected handshake from scripts.
      setStatus("Connection failed: the sandbox rejected the handshake or is not running; see its output", "failed");
      return;
    }
    const reason = event.reason ? `: ${event.reason}` : "";
    setStatus(`Disconnected (close code ${event.code}${reason})`, event.code === 1000 ? "" : "failed");
  });
}

joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket === null) join(nameInput.value.trim(), roomInput.value.trim());
});

leaveButton.addEventListener("click", () => {
  if (socket !== null) socket.close(1000, "left the room");
});

sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = textInput.value;
  if (socket === null || socket.readyState !== WebSocket.OPEN || text === "") return;
  socket.send(JSON.stringify({ text }));
  textInput.value = "";
});

const pageQuery = new URLSearchParams(location.search);
nameInput.value = pageQuery.get("name") || "";
roomInput.value = pageQuery.get("room") || "";
if (pageQuery.has("name") || pageQuery.has("room")) {
  join(nameInput.value.trim(), roomInput.value.trim());
}
