"""The fast HTML->markdown path gives markdownify's own text, byte for byte: on ChatGPT-page
markup from the ingest benchmark's generator, on hand-written edge cases, and on random tag soup
(unclosed and stray tags, entities, whitespace, void elements); what it does not model falls
back to markdownify."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import markdownify
import pytest

from services.ingestor.formats import fast_markdown
from services.ingestor.formats.fast_markdown import Unsupported, markdownify_fast
from services.ingestor.formats.sharegpt import html_to_markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_ingest_peers

EDGE_CASES = [
    "",
    "plain text with_underscores and *stars*",
    "<p>one</p><p>two</p>",
    "<p>unclosed <b>bold <i>both</b> after</p>",
    "</div>stray end<p>x</p></span>y",
    "<pre><code>def f(x_1):\n    return x_1 * 2\n</code></pre>",
    "<pre>\n\n  indented\n\n</pre>",
    "<ol start='3'><li>a</li><li>b<ul><li>c</li></ul></li></ol>text after",
    "<ul>\n  <li>  spaced  </li>\n</ul>\n<p>p</p>",
    "<table><thead><tr><th>a</th><th colspan='2'>b</th></tr></thead>"
    "<tbody><tr><td>1</td><td>2</td></tr></tbody></table>",
    "<table><tr><td>no head</td></tr></table>",
    "<h1>Title</h1><h2>Sub</h2><h3>three</h3><hr/><blockquote>q<br>r</blockquote>",
    'see <a href="https://x.y/a_b">https://x.y/a_b</a> and <a href="u" title="t">t</a>',
    "&amp; &lt;tag&gt; &copy &#39; &#x27; &#150; &bogus; a & b <3 < p>",
    "<img src='s.png' alt='a'> <br/><br></br>end",
    "<dl><dt>term</dt><dd>definition\nline</dd></dl>",
    "<p>  \n  </p>   \n <div> </div>",
    "<code>x`y</code> <kbd>k</kbd> <del>d</del> <sub>s</sub> <q>q</q>",
]
FALLBACK_CASES = ["<!-- c --><p>x</p>", "<script>var a = 1 < 2;</script>", "<!DOCTYPE html><p>x"]
TAGS = [
    "p",
    "div",
    "span",
    "pre",
    "code",
    "ol",
    "ul",
    "li",
    "strong",
    "b",
    "em",
    "i",
    "a",
    "h1",
    "h2",
    "h3",
    "br",
    "hr",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tr",
    "td",
    "th",
    "img",
    "q",
    "del",
    "s",
    "sub",
    "sup",
    "kbd",
    "dl",
    "dt",
    "dd",
    "button",
    "svg",
    "section",
]
TEXTS = [
    "x_1", "a*b", " ", "\n", "  \n ", "word", "&amp;", "&lt;b&gt;", "&copy", "&#39;", "&nbsp;",
    "1. item", "# h", "`t`", "\t", "-", "&#150;", "&bogus;", "a & b", "<3", "< p>",
]  # fmt: skip
ATTRS = ["", ' href="x_1"', ' href="http://a"', ' colspan="2"', ' start="3"', ' alt="a" src="s"']


def tag_soup(rng: random.Random, depth: int = 0) -> str:
    out = []
    for _ in range(rng.randint(0, 5)):
        if rng.random() < 0.45 or depth > 4:
            out.append(rng.choice(TEXTS))
            continue
        tag, attrs = rng.choice(TAGS), rng.choice(ATTRS)
        if tag in ("br", "hr", "img") and rng.random() < 0.5:
            out.append(f"<{tag}{attrs}/>")
            continue
        inner = tag_soup(rng, depth + 1)
        out.append(f"<{tag}{attrs}>{inner}" + (f"</{tag}>" if rng.random() < 0.85 else ""))
        if rng.random() < 0.1:
            out.append(f"</{rng.choice(TAGS)}>")
    return "".join(out)


@pytest.mark.parametrize("html", EDGE_CASES)
def test_edge_cases_match_markdownify(html: str) -> None:
    assert markdownify_fast(html) == markdownify.markdownify(html)


@pytest.mark.parametrize("html", FALLBACK_CASES)
def test_what_is_not_modelled_falls_back(html: str) -> None:
    with pytest.raises(Unsupported):
        markdownify_fast(html)
    assert html_to_markdown(html) == markdownify.markdownify(html).strip()


def test_random_tag_soup_matches_markdownify() -> None:
    rng = random.Random(17)
    for _ in range(3000):
        html = tag_soup(rng)
        assert markdownify_fast(html) == markdownify.markdownify(html), html


def test_chatgpt_page_markup_matches_markdownify() -> None:
    rng = random.Random(3)
    for i in range(150):
        for turn in bench_ingest_peers.record(rng, i)["conversations"]:
            html = turn["value"]
            assert markdownify_fast(html) == markdownify.markdownify(html), html


PLAIN_PIECES = [
    '<DIV Class="a b">',
    '<p\n  id="x"\tdata-x="1">',
    "<input disabled>",
    '<a href="">',
    "<br />",
    '<img src="s"/>',
    '<span a="1" a="2">',
    '<svg:rect x:y="z">',
    "</DIV>",
    "</b>",
    "&AMP;",
    "&notanentity;",
    "&#X41;",
    "&#0;",
    "&#1114112;",
    "\r\n",
    "text > more",
]


def _tree(node: object) -> object:
    if getattr(node, "name", None) is None:
        return node.text  # type: ignore[attr-defined]
    children = [_tree(child) for child in node.children]  # type: ignore[attr-defined]
    return (node.name, sorted(node.attrs.items()), children)  # type: ignore[attr-defined]


def _html_parser_tree(html: str) -> object:
    builder = fast_markdown.TreeBuilder()
    builder.feed(html)
    builder.close()
    builder.end_data()
    return _tree(builder.root)


def test_plain_markup_builds_the_tree_html_parser_builds() -> None:
    """Where the plain tokenizer accepts markup, its tree is html.parser's, node for node."""
    rng = random.Random(5)
    soups = [tag_soup(rng) for _ in range(2000)]
    soups += ["".join(rng.choices(PLAIN_PIECES + TEXTS, k=12)) for _ in range(2000)]
    pages = [
        t["value"] for i in range(100) for t in bench_ingest_peers.record(rng, i)["conversations"]
    ]
    assert all(fast_markdown.TreeBuilder().feed_plain(html) for html in pages)
    plain = 0
    for html in soups + pages:
        builder = fast_markdown.TreeBuilder()
        try:
            accepted = builder.feed_plain(html)
        except Unsupported:
            continue
        if accepted:
            plain += 1
            builder.end_data()
            assert _tree(builder.root) == _html_parser_tree(html), html
    assert plain > 1000


def test_markup_outside_the_plain_subset_goes_to_html_parser() -> None:
    for html in ["a < b", "<a href='x'>", "<a href=x>", "&amp x", "</ b>", '<a b = "c">', "&#65a;"]:
        assert not fast_markdown.TreeBuilder().feed_plain(html)
        assert markdownify_fast(html) == markdownify.markdownify(html)
