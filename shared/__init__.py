"""camel-chat's common package: settings, wire schemas, conversation templates, Redis plumbing.

Services import from here and never from each other.
"""
