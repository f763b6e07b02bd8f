/** Conference: a tile per participant (three by default, ?max=N for more), chat, participants and invite. */
import {$, Grid, pageParam, startRoomPage, t} from "./room-page.js";

const asked = parseInt(pageParam("max") || "", 10);
const maxParticipants = Number.isFinite(asked) && asked >= 2 ? Math.min(asked, 500) : 3;
const perPage = parseInt(pageParam("perPage") || "", 10);
if (maxParticipants !== 3) $("subtitle").textContent = t("conference_subtitle_max", {n: maxParticipants});

const grid = new Grid({
  container: $("grid"),
  empty: $("gridEmpty"),
  pageSize: Number.isFinite(perPage) && perPage > 0 ? perPage : 25,
  layoutButton: $("layoutBtn"),
  pager: {bar: $("pager"), prev: $("prevPage"), next: $("nextPage"), info: $("pageInfo")},
});

window.conferencePage = startRoomPage({maxParticipants, grid});
