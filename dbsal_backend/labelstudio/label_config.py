"""Parse a Label Studio label config for semantic segmentation.

The backend needs exactly one ``Image`` object tag and a ``BrushLabels`` or a ``PolygonLabels``
control tag whose ``toName`` is that image, or one of each with the same labels in the same
order: Label Studio's own templates "Semantic Segmentation with Masks" (brush alone) and "with
Polygons" (polygons alone) work as they are. The ``Label`` children, in order, are the classes
(class ``i`` of a model is ``labels[i]``); a label's ``alias``, which Label Studio writes into
results in place of its value, names the same class. With a ``PolygonLabels`` tag the backend's
pre-labels are polygons, which Label Studio draws far faster than brush masks. Other tags
(``Header``, ``Choices``, ``TextArea``, ...) and attributes (colours, hotkeys, stroke widths) are
allowed and ignored. Tag names are matched case-insensitively, as the Label Studio editor does.

The config comes from whoever calls ``/setup``, so parsing is bounded: a config longer than
:data:`MAX_CONFIG_CHARS`, with more than :data:`MAX_TAGS` tags, nested deeper than
:data:`MAX_DEPTH` or with more than :data:`MAX_LABELS` labels (class indices stay below
``IGNORE_INDEX``) is refused, every check is linear in the config's length, and malformed input
of any kind raises :class:`LabelConfigError`.
XML is parsed with :mod:`defusedxml` (entity expansion and external references are refused); an
``<?xml ...?>`` declaration is dropped first (the config is already text, so its encoding is
moot).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml.ElementTree import DefusedXMLParser

from ..engine.constants import IGNORE_INDEX

__all__ = ["EXAMPLE_LABEL_CONFIG", "MAX_CONFIG_CHARS", "MAX_DEPTH", "MAX_LABELS", "MAX_TAGS",
           "LabelConfig", "LabelConfigError", "parse_label_config"]

#: Longest label config accepted, in characters.
MAX_CONFIG_CHARS = 2**20
#: Deepest tag nesting accepted.
MAX_DEPTH = 64
#: Most tags accepted (a brush config has a few hundred at most; this bounds the parse time).
MAX_TAGS = 10_000
#: Most labels accepted: class indices ``0 .. MAX_LABELS - 1`` stay below ``IGNORE_INDEX``.
MAX_LABELS = IGNORE_INDEX - 1

# A leading XML declaration (after an optional byte order mark or blank space).
_DECLARATION = re.compile(r"\A[\ufeff\s]*<\?xml\s[^>]*>")

#: A label config the backend accepts: one image, one brush tool with a few classes.
#: (Label Studio's "Semantic Segmentation with Polygons" template, a ``PolygonLabels`` tag in
#: place of the ``BrushLabels``, is accepted too.)
EXAMPLE_LABEL_CONFIG = """\
<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="background" background="#7f7f7f"/>
    <Label value="road" background="#804080"/>
    <Label value="building" background="#464646"/>
    <Label value="vegetation" background="#6b8e23"/>
    <Label value="sky" background="#4682b4"/>
  </BrushLabels>
</View>
"""

_MINIMAL_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="tag" toName="image">'
    '<Label value="background"/><Label value="object"/>'
    "</BrushLabels></View>"
)


class LabelConfigError(ValueError):
    """The label config is not one the backend can work with."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"unsupported label config: {reason}. The backend needs exactly one <Image> with a "
            f'value like "$image" and a <BrushLabels> or a <PolygonLabels> (or one of each, with '
            f"the same labels) whose toName is that image, with at least one <Label value=...>; "
            f"for example: {_MINIMAL_CONFIG} (Label Studio's templates \"Semantic Segmentation "
            f'with Masks" and "with Polygons" both work)'

        )
        self.reason = reason


@dataclass(frozen=True)
class LabelConfig:
    """What the backend reads from a label config.

    Attributes
    ----------
    image_name : str
        ``name`` of the ``Image`` tag (the ``to_name`` of brush results).
    image_value : str
        Task data key of the image (``"image"`` for ``value="$image"``).
    brush_name : str or None
        ``name`` of the ``BrushLabels`` tag (the ``from_name`` of brush results).
    labels : list of str
        ``Label`` values in config order; class ``i`` is ``labels[i]``.
    polygon_name : str or None
        ``name`` of the ``PolygonLabels`` tag (the ``from_name`` of polygon results).
    aliases : dict of str to str
        ``{alias: label}`` for labels with an ``alias`` attribute.
    """

    image_name: str
    image_value: str
    brush_name: str | None
    labels: list[str]
    polygon_name: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def class_index(self) -> dict[str, int]:
        """``{label or alias: class index}``, the labels in config order."""
        index = {label: i for i, label in enumerate(self.labels)}
        return {**{alias: index[label] for alias, label in self.aliases.items()}, **index}


class _BoundedBuilder(TreeBuilder):
    """An ElementTree builder that refuses more than :data:`MAX_TAGS` tags or nesting deeper
    than :data:`MAX_DEPTH` as it parses (counters, no recursion)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.tags = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Any:
        self.depth += 1
        self.tags += 1
        if self.depth > MAX_DEPTH:
            raise LabelConfigError(f"tags are nested more than {MAX_DEPTH} levels deep")
        if self.tags > MAX_TAGS:
            raise LabelConfigError(f"the config has more than {MAX_TAGS} tags")
        return super().start(tag, attrs)

    def end(self, tag: str) -> Any:
        self.depth -= 1
        return super().end(tag)


def _parse(xml: str) -> Element:
    parser = DefusedXMLParser(target=_BoundedBuilder())
    try:
        parser.feed(_DECLARATION.sub("", xml, count=1))
        return parser.close()
    except LabelConfigError:
        raise
    except (ParseError, ValueError, LookupError) as exc:
        # ValueError covers defusedxml's refusals (entities, external references) and text
        # that cannot be encoded (lone surrogates).
        raise LabelConfigError(f"malformed XML ({type(exc).__name__}: {str(exc)[:200]})") \
            from None


def _tags(root: Element, name: str) -> list[Element]:
    return [el for el in root.iter() if isinstance(el.tag, str) and el.tag.lower() == name]


def _attribute(element: Element, key: str, what: str) -> str:
    value = (element.get(key) or "").strip()
    if not value:
        raise LabelConfigError(f'{what} has no "{key}" attribute')
    return value


def parse_label_config(xml: str) -> LabelConfig:
    """Parse a label config into a :class:`LabelConfig`.

    Parameters
    ----------
    xml : str
        The project's ``label_config``.

    Returns
    -------
    LabelConfig

    Raises
    ------
    TypeError
        If ``xml`` is not a string.
    LabelConfigError
        If the XML is malformed, too long or too deeply nested, or there is not exactly one
        ``Image`` and a ``BrushLabels`` or ``PolygonLabels`` (at most one of each, with the
        same labels) pointing at it with 1 to :data:`MAX_LABELS` distinct, non-empty ``Label``
        values, or an alias names two labels.
    """
    if not isinstance(xml, str):
        raise TypeError(f"label config must be a str, got {type(xml).__name__}")
    if len(xml) > MAX_CONFIG_CHARS:
        raise LabelConfigError(f"the config has {len(xml)} characters, more than "
                               f"{MAX_CONFIG_CHARS}")
    root = _parse(xml)

    images = _tags(root, "image")
    if len(images) != 1:
        raise LabelConfigError(f"found {len(images)} <Image> tags, need exactly one")
    image = images[0]
    image_name = _attribute(image, "name", "<Image>")
    image_value = _attribute(image, "value", "<Image>")
    if not image_value.startswith("$") or len(image_value) < 2:
        raise LabelConfigError(
            f'<Image value="{image_value}"> must name a task data key, like "$image"'
        )

    controls = {}
    for kind, what in (("brushlabels", "<BrushLabels>"), ("polygonlabels", "<PolygonLabels>")):
        tags = _tags(root, kind)
        if len(tags) > 1:
            raise LabelConfigError(f"found {len(tags)} {what} tags, need at most one")
        if tags:
            to_name = _attribute(tags[0], "toName", what)
            if to_name != image_name:
                raise LabelConfigError(f'{what} toName="{to_name}" must name the image '
                                       f'"{image_name}"')
            controls[kind] = (_attribute(tags[0], "name", what), *_labels(tags[0], what))
    if not controls:
        raise LabelConfigError("found no <BrushLabels> and no <PolygonLabels>, need one of them")
    brush = controls.get("brushlabels")
    polygon = controls.get("polygonlabels")
    if brush and polygon and brush[1] != polygon[1]:
        raise LabelConfigError("<PolygonLabels> must have the same labels as <BrushLabels>, "
                               "in the same order")
    labels = (brush or polygon)[1]
    aliases: dict[str, str] = {}
    for _, _, tag_aliases in filter(None, (brush, polygon)):
        for alias, label in tag_aliases.items():
            if aliases.setdefault(alias, label) != label:
                raise LabelConfigError(f'the alias "{alias}" names two labels')
    clashes = sorted(alias for alias, label in aliases.items()
                     if alias in labels and alias != label)
    if clashes:
        raise LabelConfigError(f"the aliases {clashes} are also the values of other labels")
    return LabelConfig(
        image_name=image_name,
        image_value=image_value[1:],
        brush_name=brush[0] if brush else None,
        labels=labels,
        polygon_name=polygon[0] if polygon else None,
        aliases=aliases,
    )


def _labels(tag: Element, what: str) -> tuple[list[str], dict[str, str]]:
    """The ``Label`` values of a control tag, checked (count, values, duplicates), and
    ``{alias: value}`` of those with an alias."""
    elements = _tags(tag, "label")
    if not elements:
        raise LabelConfigError(f"{what} has no <Label> children")
    if len(elements) > MAX_LABELS:
        raise LabelConfigError(f"{what} has {len(elements)} labels, more than "
                               f"{MAX_LABELS} (class indices must stay below {IGNORE_INDEX})")
    labels = [_attribute(el, "value", f"a <Label> of {what}") for el in elements]
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise LabelConfigError(f"{what} repeats the labels {duplicates}")
    aliases = {}
    for element, label in zip(elements, labels):
        alias = (element.get("alias") or "").strip()
        if alias and alias != label:
            if aliases.get(alias, label) != label:
                raise LabelConfigError(f'{what} gives two labels the alias "{alias}"')
            aliases[alias] = label
    return labels, aliases
