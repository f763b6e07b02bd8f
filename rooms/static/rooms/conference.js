/** Conference: three participants, two remote displays, chat and invite. */
import {$, Slot, startRoomPage} from "./room-page.js";

const slot = (n) =>
  new Slot({
    root: $(`participant${n}`),
    name: $(`participant${n}Name`),
    displays: {camera: {display: $(`participant${n}Display`), status: $(`participant${n}Status`)}},
  });

window.conferencePage = startRoomPage({maxParticipants: 3, slots: [slot(1), slot(2)]});
