"""Recordings as room data: the rows, their REST API and admin, and the room mix job.

The media relay writes and mixes the files (media_relay.recording); this
package decides what is recorded, where the files go, and keeps their state.
"""
