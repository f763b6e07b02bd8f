/** Where the page talks to and which room it is about: the server URL, the room name, the invite link. */

/** ws(s)://<this host>, the default server URL. */
export function defaultServerUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}

let roomName = null;

/** The room of the page: ?roomName=..., else a random room-xxxxxx. */
export function getRoomName() {
  if (roomName) return roomName;
  const param = new URLSearchParams(location.search).get("roomName");
  if (param && param.trim()) roomName = param.trim();
  else {
    const bytes = crypto.getRandomValues(new Uint8Array(3));
    roomName = "room-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }
  return roomName;
}

/** The invite link for a room on this page. */
export function inviteUrl(name) {
  return `${location.origin}${location.pathname}?roomName=${encodeURIComponent(name)}`;
}
