/** Video Chat & Screen: a camera each, plus a shared screen as a second stream. */
import {STREAM_STATUS} from "./roomapi.js";
import {$, setStatus, Slot, startRoomPage, t} from "./room-page.js";

const remote = new Slot({
  root: $("remote"),
  name: $("remoteName"),
  displays: {
    camera: {display: $("remoteDisplay"), status: $("remoteStatus")},
    screen: {display: $("remoteScreenDisplay"), status: $("remoteScreenStatus")},
  },
});

let screenStream = null;

const number = (id, fallback) => {
  const value = parseInt($(id).value, 10);
  return Number.isFinite(value) && value > 0 ? value : fallback;
};

const sharing = () => screenStream && [STREAM_STATUS.PENDING, STREAM_STATUS.PUBLISHING].includes(screenStream.status());

const updateShare = (room) => {
  $("shareBtn").disabled = !room;
  $("shareBtn").textContent = sharing() ? t("stop_sharing") : t("share");
  document.body.classList.toggle("sharing", Boolean(sharing()));
};

const page = startRoomPage({
  maxParticipants: 2,
  slots: [remote],
  onJoined: (room) => updateShare(room),
  onLeft: () => {
    if (screenStream) screenStream.stop();
    screenStream = null;
    setStatus($("localScreenStatus"), "NONE");
    updateShare(null);
  },
});
updateShare(null);
setStatus($("localScreenStatus"), "NONE");

$("shareBtn").addEventListener("click", () => {
  const room = page.room;
  if (!room) return;
  if (sharing()) {
    screenStream.stop();
    return;
  }
  const video = {width: number("width", 1280), height: number("height", 720), frameRate: number("fps", 30)};
  screenStream = room.publish({display: $("localScreenDisplay"), screen: true, constraints: {video, audio: false}});
  const show = (stream) => {
    setStatus($("localScreenStatus"), stream.status());
    if (stream.status() === STREAM_STATUS.FAILED && stream.getInfo()) $("failedInfo").textContent = stream.getInfo().message;
    updateShare(page.room);
  };
  screenStream
    .on(STREAM_STATUS.PENDING, show)
    .on(STREAM_STATUS.PUBLISHING, show)
    .on(STREAM_STATUS.UNPUBLISHED, show)
    .on(STREAM_STATUS.FAILED, show);
  updateShare(room);
});

window.screenSharingPage = page;
