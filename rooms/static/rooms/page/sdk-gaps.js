/**
 * What the pages need and roomapi.js does not offer yet, in one place so each goes when the SDK grows it:
 * - moderate(room, action, fields): the server's `moderate` command (docs/protocol.md, "Moderation");
 * - replaceTrack(stream, track): swap a published track without renegotiating (RTCRtpSender.replaceTrack).
 * Each uses the SDK's public method when there is one (room.moderate, stream.replaceTrack) and only
 * otherwise reaches into the SDK's internals.
 */

/**
 * Ask the server for a moderator action ("lock", "unlock", "set_max_participants", "mute", "unpublish", "kick").
 * Rejects with {code, message} when refused (e.g. code "forbidden" for someone who is not a moderator).
 * @param {object} room  the SDK's Room
 * @param {string} action
 * @param {object} [fields]  e.g. {login} for kick, {stream, audio, video} for mute
 * @returns {Promise<void>}
 */
export function moderate(room, action, fields = {}) {
  if (typeof room.moderate === "function") return Promise.resolve(room.moderate(action, fields));
  const connection = room._connection;
  if (!connection || typeof connection._request !== "function") {
    return Promise.reject({code: "unsupported", message: "this SDK cannot moderate"});
  }
  return connection._request("moderate", {action, ...fields}).then(() => undefined);
}

/**
 * Replace the published track of the same kind by ``track`` (device switch mid-call) and in the stream's
 * MediaStream (so the preview and the SDK's mute flags follow); the old track is stopped.
 * @param {object} stream  the SDK's LocalStream
 * @param {MediaStreamTrack} track
 * @returns {Promise<void>}
 */
export async function replaceTrack(stream, track) {
  const media = stream.getMediaStream();
  const old = media ? media.getTracks().find((t) => t.kind === track.kind) : null;
  if (old) track.enabled = old.enabled;
  if (typeof stream.replaceTrack === "function") {
    await stream.replaceTrack(track);
  } else {
    const pc = stream._negotiation && stream._negotiation.pc;
    if (!pc) throw new Error("the stream is not published");
    const sender = pc.getSenders().find((s) => s.track && s.track.kind === track.kind);
    if (!sender) throw new Error(`no ${track.kind} sender`);
    await sender.replaceTrack(track);
  }
  if (media) {
    if (old) media.removeTrack(old);
    media.addTrack(track);
  }
  if (old) old.stop();
}
