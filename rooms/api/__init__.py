"""The Room REST API (Django REST framework), mounted under /api/."""
