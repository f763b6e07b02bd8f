// The WHEP player (/whep-player/): plays one stream of a room in its only <video>.
// Query parameters: room, stream (a stream id or a publisher's login), token (a join token; optional in guest
// mode), endpoint (another WHEP URL to play from instead). See docs/whip-whep.md.

const params = new URLSearchParams(location.search);
const video = /** @type {HTMLVideoElement} */ (document.getElementById("video"));

/** The WHEP endpoint to POST the offer to. */
function endpoint() {
  const given = params.get("endpoint");
  if (given) return given;
  const room = encodeURIComponent(params.get("room") || "");
  const stream = encodeURIComponent(params.get("stream") || "");
  return `/whep/${room}/${stream}`;
}

/** Parse `Link: <url>; rel="ice-server"; username=...; credential=...` headers into RTCIceServer entries. */
function iceServers(header) {
  if (!header) return [];
  return header.split(/,\s*(?=<)/).flatMap((link) => {
    const url = /^<([^>]+)>/.exec(link);
    if (!url || !/rel="ice-server"/.test(link)) return [];
    const username = /username="([^"]*)"/.exec(link);
    const credential = /credential="([^"]*)"/.exec(link);
    return [{ urls: url[1], ...(username ? { username: username[1], credential: credential ? credential[1] : "" } : {}) }];
  });
}

async function play() {
  const headers = params.get("token") ? { Authorization: `Bearer ${params.get("token")}` } : {};
  const preflight = await fetch(endpoint(), { method: "OPTIONS" }).catch(() => null);
  const pc = new RTCPeerConnection({ iceServers: iceServers(preflight ? preflight.headers.get("Link") : null) });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = (event) => {
    stream.addTrack(event.track);
    video.srcObject = stream;
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve(undefined);
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve(undefined));
    setTimeout(resolve, 2000);
  });
  const response = await fetch(endpoint(), {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/sdp" },
    body: pc.localDescription ? pc.localDescription.sdp : "",
  });
  if (response.status !== 201) {
    video.dataset.error = `${response.status} ${await response.text()}`;
    pc.close();
    return;
  }
  const resource = new URL(response.headers.get("Location") || "", location.href).href;
  video.dataset.session = resource;
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  addEventListener("pagehide", () => {
    fetch(resource, { method: "DELETE", keepalive: true });
    pc.close();
  });
}

play().catch((error) => {
  video.dataset.error = String(error);
});
