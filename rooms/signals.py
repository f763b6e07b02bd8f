"""Domain signals sent after commit; recording and webhooks listen to them.

Receivers run synchronously in the thread that committed: they must only
enqueue work, never block.
"""

from django.dispatch import Signal

# kwargs: room (Room)
room_started = Signal()
# kwargs: room (Room)
room_finished = Signal()
# kwargs: participant (Participant)
participant_joined = Signal()
# kwargs: participant (Participant)
participant_left = Signal()
# kwargs: stream (Stream)
stream_published = Signal()
# kwargs: stream (Stream)
stream_unpublished = Signal()
# kwargs: message (Message)
message_sent = Signal()
# kwargs: recording (a Recording; sent by rooms.recordings.store when its file is ready)
recording_finished = Signal()
