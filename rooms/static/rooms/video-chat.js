/** Two Way Video Chat: the remote participant large, oneself small in a corner. */
import {$, Slot, startRoomPage} from "./room-page.js";

const remote = new Slot({
  root: $("remote"),
  name: $("remoteName"),
  displays: {camera: {display: $("remoteDisplay"), status: $("remoteStatus")}},
});

window.videoChatPage = startRoomPage({maxParticipants: 2, slots: [remote]});
