"""HTML to markdown, the same text as ``markdownify.markdownify`` (BeautifulSoup with Python's
``html.parser``) at several times its speed.

Where the time went: BeautifulSoup builds a rich tree (filters, navigation caches) and
markdownify asks it ``find_parent('pre')`` for every element. Here the same tokenizer
(``html.parser``, so the same tokens, entities and attributes) feeds a slim tree built with
BeautifulSoup's own rules (a tag closes back to its most recent open namesake, a stray end tag is
ignored, void elements close at once, whitespace-only strings collapse to one space or newline
outside ``<pre>``/``<textarea>``, every tag boundary ends a string), and markdownify's own
``convert_*`` methods run on it, with ``process_tag``/``process_text`` ported to carry "inside
``<pre>``" down instead of searching for it.

Anything outside what this tree models (comments, declarations, processing instructions,
``<script>``/``<style>``/``<template>``/ruby/``<video>``, a parser error) raises
``Unsupported`` and the caller falls back to markdownify itself. Equivalence is checked by
tests/test_fast_markdown.py on fixtures and on generated ChatGPT-page markup.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from bs4.builder._htmlparser import BeautifulSoupHTMLParser
from bs4.dammit import EntitySubstitution
from markdownify import (
    MarkdownConverter,
    re_extract_newlines,
    re_html_heading,
    re_newline_whitespace,
    re_whitespace,
)

VOID_TAGS = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "menuitem",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "basefont",
        "bgsound",
        "command",
        "frame",
        "image",
        "isindex",
        "nextid",
        "spacer",
    ]
)
PRESERVE_WHITESPACE = frozenset(("pre", "textarea"))
# Tags whose strings BeautifulSoup types differently or whose conversion needs more of its API.
UNSUPPORTED_TAGS = frozenset(("script", "style", "template", "rt", "rp", "video", "textarea"))
ASCII_SPACES = "\x20\x0a\x09\x0c\x0d"
_BLOCK_INSIDE = frozenset(
    [
        "p",
        "blockquote",
        "article",
        "div",
        "section",
        "ol",
        "ul",
        "li",
        "dl",
        "dt",
        "dd",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "tr",
        "td",
        "th",
    ]
)
# The well-formed markup that html.parser (convert_charrefs=False) reads as text runs, tags with
# double-quoted attribute values free of markup characters, end tags and ';'-terminated
# references; each alternative is a case of its parse_starttag/parse_endtag/goahead whose events
# are plain to read off (tests/ingestor/test_fast_markdown.py compares the trees).
_SPACE = " \t\n\r\f"
PLAIN_MARKUP = re.compile(
    rf"""(?P<text>[^<&]+)
    |<(?P<start>[a-zA-Z][a-zA-Z0-9]*)
      (?P<attrs>(?:[{_SPACE}]+[a-zA-Z_:][-a-zA-Z0-9_:.]*(?:="[^"<>&]*")?)*)
      [{_SPACE}]*(?P<selfclosing>/?)>
    |</(?P<end>[a-zA-Z][a-zA-Z0-9]*)>
    |&(?P<entity>[a-zA-Z][a-zA-Z0-9]*);
    |&\#(?P<charref>[0-9]+|[xX][0-9a-fA-F]+);""",
    re.VERBOSE,
)
PLAIN_ATTRIBUTE = re.compile(r'([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:="([^"]*)")?')
_ENTITIES = EntitySubstitution.HTML_ENTITY_TO_CHARACTER
_dereference = BeautifulSoupHTMLParser._dereference_numeric_character_reference


class Unsupported(Exception):
    """The markup needs BeautifulSoup itself (see the module docstring)."""


class Text:
    __slots__ = ("next", "parent", "prev", "text")
    name = None
    removes_inside = removes_outside = False

    def __init__(self, text: str, parent: Element) -> None:
        self.text = text
        self.parent = parent
        self.prev: Text | Element | None = None
        self.next: Text | Element | None = None


class Element:
    """The part of bs4's ``Tag`` that markdownify's ``convert_*`` methods use."""

    __slots__ = (
        "attrs",
        "children",
        "name",
        "next",
        "parent",
        "prev",
        "removes_inside",
        "removes_outside",
    )

    def __init__(self, name: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.name = name
        # markdownify's should_remove_whitespace_inside/_outside for this tag
        self.removes_inside = name in _BLOCK_INSIDE or re_html_heading.match(name) is not None
        self.removes_outside = self.removes_inside or name == "pre"
        self.attrs = attrs
        self.parent = parent
        self.children: list[Text | Element] = []
        self.prev: Text | Element | None = None
        self.next: Text | Element | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.attrs[key]

    def find_previous_siblings(self, name: str) -> list[Element]:
        out, node = [], self.prev
        while node is not None:
            if node.name == name:
                out.append(node)
            node = node.prev
        return out

    def find_previous_sibling(self) -> Element | None:
        node = self.prev
        while node is not None and node.name is None:
            node = node.prev
        return node

    def find_all(self, names: str | list[str]) -> list[Element]:
        wanted = {names} if isinstance(names, str) else set(names)
        out: list[Element] = []
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            if node.name is not None:
                if node.name in wanted:
                    out.append(node)
                stack.extend(reversed(node.children))
        return out


class TreeBuilder(HTMLParser):
    """html.parser events -> Element/Text, with BeautifulSoup's tree-building rules."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.root = Element("[document]", {}, None)
        self.stack = [self.root]
        self.data: list[str] = []
        self.preserve = 0
        self.closed_void: list[str] = []

    def _append(self, node: Text | Element) -> None:
        siblings = self.stack[-1].children
        if siblings:
            node.prev = siblings[-1]
            siblings[-1].next = node
        siblings.append(node)

    def end_data(self) -> None:
        if not self.data:
            return
        text = "".join(self.data)
        self.data = []
        if not self.preserve and not text.strip(ASCII_SPACES):
            text = "\n" if "\n" in text else " "
        self._append(Text(text, self.stack[-1]))

    def feed_plain(self, html: str) -> bool:
        """Build the tree of markup in ``PLAIN_MARKUP``'s subset, where html.parser would deliver
        the same events, without html.parser's per-token work; False (the tree half built) at
        the first construct outside it, for which the caller parses with ``feed``."""
        position = 0
        for match in PLAIN_MARKUP.finditer(html):
            if match.start() != position:
                return False
            position = match.end()
            kind = match.lastgroup
            if kind == "text":
                self.data.append(match["text"])
            elif kind == "selfclosing":  # the last group of a start tag
                found = match["attrs"]
                attrs = [(k.lower(), v) for k, v in PLAIN_ATTRIBUTE.findall(found)] if found else []
                if match["selfclosing"]:
                    self.handle_startendtag(match["start"].lower(), attrs)
                else:
                    self.handle_starttag(match["start"].lower(), attrs)
            elif kind == "end":
                self.handle_endtag(match["end"].lower())
            elif kind == "entity":
                self.handle_entityref(match["entity"])
            else:
                self.handle_charref(match["charref"])
        return position == len(html)

    def handle_starttag(self, tag: str, attrs: list, closes: bool = True) -> None:
        if tag in UNSUPPORTED_TAGS:
            raise Unsupported(tag)
        self.end_data()
        element = Element(tag, {k: "" if v is None else v for k, v in attrs}, self.stack[-1])
        self._append(element)
        self.stack.append(element)
        if tag in PRESERVE_WHITESPACE:
            self.preserve += 1
        if tag in VOID_TAGS and closes:
            self.handle_endtag(tag, check_closed=False)
            self.closed_void.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs, closes=False)
        self.handle_endtag(tag, check_closed=False)

    def handle_endtag(self, tag: str, check_closed: bool = True) -> None:
        if check_closed and tag in self.closed_void:
            self.closed_void.remove(tag)
            return
        self.end_data()
        stack = self.stack
        for depth in range(len(stack) - 1, 0, -1):  # the most recent open namesake, if any
            if stack[depth].name == tag:
                break
        else:
            return
        for element in stack[depth:]:
            if element.name in PRESERVE_WHITESPACE:
                self.preserve -= 1
        del stack[depth:]

    def handle_data(self, data: str) -> None:
        self.data.append(data)

    def handle_charref(self, name: str) -> None:
        dereferenced, _, extra = _dereference(name)
        if dereferenced is not None:
            self.handle_data(dereferenced)
        if extra is not None:
            self.handle_data(extra)

    def handle_entityref(self, name: str) -> None:
        character = _ENTITIES.get(name)
        self.handle_data(character if character is not None else f"&{name}")

    def _unsupported(self, data: str) -> None:
        raise Unsupported("comment, declaration or processing instruction")

    handle_comment = handle_decl = unknown_decl = handle_pi = _unsupported


def parse(html: str) -> Element:
    builder = TreeBuilder()
    if builder.feed_plain(html):
        builder.end_data()
        return builder.root
    builder = TreeBuilder()
    try:
        builder.feed(html)
        builder.close()
    except Unsupported:
        raise
    except Exception as exc:
        raise Unsupported(repr(exc)) from exc
    builder.end_data()
    return builder.root


def _remove_outside(node: Element | Text | None) -> bool:
    return node is not None and node.removes_outside


def _keep(el: Text | Element, remove_inside: bool) -> bool:
    """markdownify's ``_can_ignore``, negated, for this tree (no comments in it)."""
    if el.name is not None or el.text.strip() != "":
        return True
    if remove_inside and (el.prev is None or el.next is None):
        return False
    return not (_remove_outside(el.prev) or _remove_outside(el.next))


def _collapse_newlines(child_strings: list[str]) -> list[str]:
    updated = [""]
    for child in child_strings:
        leading, content, trailing = re_extract_newlines.match(child).groups()
        if updated[-1] and leading:
            previous = updated.pop()
            leading = "\n" * min(2, max(len(previous), len(leading)))
        updated.extend((leading, content, trailing))
    return updated


class FastConverter(MarkdownConverter):
    """markdownify's converter over the slim tree; same options, same output."""

    def convert(self, html: str) -> str:
        return self.process_node(parse(html), set(), False)

    def process_node(self, node: Element, parent_tags: set[str], in_pre: bool) -> str:
        name = node.name
        remove_inside = node.removes_inside
        tags = set(parent_tags)
        tags.add(name)
        if re_html_heading.match(name) is not None or name in ("td", "th"):
            tags.add("_inline")
        if name in ("pre", "code", "kbd", "samp"):
            tags.add("_noformat")
        child_in_pre = in_pre or name == "pre"
        strings = []
        for el in node.children:
            if not _keep(el, remove_inside):
                continue
            if el.name is None:
                s = self.process_string(el, tags)
            else:
                s = self.process_node(el, tags, child_in_pre)
            if s:
                strings.append(s)
        if not child_in_pre:
            strings = _collapse_newlines(strings)
        text = "".join(strings)
        convert_fn = self.get_conv_fn_cached(name)
        if convert_fn is not None:
            text = convert_fn(node, text, parent_tags=parent_tags)
        return text

    def process_string(self, el: Text, parent_tags: set[str]) -> str:
        text = el.text
        if "pre" not in parent_tags:
            if self.options["wrap"]:
                raise Unsupported("wrap")
            if "\n" in text or "\r" in text:
                text = re_newline_whitespace.sub("\n", text)
            if "\t" in text or "  " in text:
                text = re_whitespace.sub(" ", text)
        if "_noformat" not in parent_tags:
            text = self.escape(text, parent_tags)
        if _remove_outside(el.prev) or (el.parent.removes_inside and el.prev is None):
            text = text.lstrip(" \t\r\n")
        if _remove_outside(el.next) or (el.parent.removes_inside and el.next is None):
            text = text.rstrip()
        return text

    def convert_list(self, el: Element, text: str, parent_tags: set[str]) -> str:
        nxt = el.next
        while nxt is not None and nxt.name is None and nxt.text.strip() == "":
            nxt = nxt.next
        before_paragraph = nxt is not None and nxt.name not in ("ul", "ol")
        if "li" in parent_tags:
            return "\n" + text.rstrip()
        return "\n\n" + text + ("\n" if before_paragraph else "")

    convert_ul = convert_list
    convert_ol = convert_list


_CONVERTER = FastConverter()


def markdownify_fast(html: str) -> str:
    """``markdownify.markdownify(html)``; raises ``Unsupported`` where it cannot promise that."""
    return _CONVERTER.convert(html)
