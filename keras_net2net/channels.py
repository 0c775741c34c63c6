"""Channel groups: union-find over the channel axes of a graph's tensors.

Every tensor that carries channels gets a `Layout`: the axis holding them and a
sequence of `Segment`s. A segment is a run of `width * inner` positions whose
channel `i` of group `atom` owns the `inner` consecutive positions
`[i * inner, (i + 1) * inner)`. Concatenate joins segments; channels_last
Flatten repeats them once per spatial position; channels_first Flatten and
depthwise multipliers grow `inner`. Tensors that must share one widening
mapping (the inputs of an Add, the calls of a shared layer, ...) have their
atoms unioned; an atom tied to something that cannot grow is frozen, with the
reason kept for the report.
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Segment:
    atom: int
    width: int
    inner: int = 1


@dataclasses.dataclass(frozen=True)
class Layout:
    axis: int
    segments: tuple

    @property
    def size(self):
        return sum(s.width * s.inner for s in self.segments)

    def atoms(self):
        return {s.atom for s in self.segments}

    def moved(self, axis):
        return Layout(axis, self.segments)

    def with_inner(self, factor):
        return Layout(self.axis, tuple(
            Segment(s.atom, s.width, s.inner * factor) for s in self.segments))


@dataclasses.dataclass(frozen=True)
class Product:
    """Positions indexed by a pair (i, t) as i * inner.size + t: grouped-query
    attention's query heads, kv head i times repeat t. The new position
    (i', t') copies old (g_outer(i'), g_inner(t')); neither part is a tensor
    axis of its own."""

    outer: Layout
    inner: Layout
    axis = None

    @property
    def segments(self):
        return self.outer.segments + self.inner.segments

    @property
    def size(self):
        return self.outer.size * self.inner.size

    def atoms(self):
        return self.outer.atoms() | self.inner.atoms()


class ChannelGroups:
    """Union-find over atoms, with freeze reasons and mapping constraints."""

    def __init__(self):
        self._parent = []
        self.widths = []
        self.producers = {}  # root-independent: atom -> [layer path]
        self.members = {}  # atom -> set of layer paths touching it
        self._frozen = {}  # root -> [reason]
        self._blocks = {}  # root -> block count for uniform replication (lcm)
        self._block_reasons = {}
        self.links = []  # (atom_a, atom_b, path of the op that coupled them)
        self.parts = {}  # atom -> consecutive child atoms it was split into

    def new_atom(self, width, producer=None):
        atom = len(self._parent)
        self._parent.append(atom)
        self.widths.append(int(width))
        self.members[atom] = set()
        if producer is not None:
            self.producers.setdefault(atom, []).append(producer)
            self.members[atom].add(producer)
        return atom

    def find(self, atom):
        root = atom
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[atom] != root:
            self._parent[atom], atom = root, self._parent[atom]
        return root

    def union(self, a, b, by):
        ra, rb = self.find(a), self.find(b)
        self.links.append((a, b, by))
        if ra == rb:
            return ra
        if self.widths[ra] != self.widths[rb]:
            raise AssertionError(f"internal: coupled widths differ at {by}")
        self._parent[rb] = ra
        self._frozen.setdefault(ra, []).extend(self._frozen.pop(rb, []))
        self.members[ra] |= self.members.pop(rb, set())
        if rb in self._blocks:
            self.require_blocks(ra, self._blocks.pop(rb), self._block_reasons.pop(rb))
        return ra

    def leaves(self, atom):
        """The atom itself, or the unsplit atoms it was split into, in order."""
        if atom not in self.parts:
            return [atom]
        return [leaf for child in self.parts[atom] for leaf in self.leaves(child)]

    def expand(self, segments):
        """Segments with every split atom replaced by its parts."""
        out = []
        for s in segments:
            if s.atom in self.parts:
                out.extend(self.expand([Segment(c, self.widths[c], s.inner)
                                        for c in self.parts[s.atom]]))
            else:
                out.append(s)
        return out

    def split(self, atom, widths, by):
        """Splits the group of `atom` into consecutive runs of `widths`, so
        that it can be joined run by run with a concatenation (an Add of a
        conv output and a Concatenate, as in Inception-ResNet and NASNet)."""
        root = self.find(atom)
        members = [a for a in range(len(self._parent))
                   if a not in self.parts and self.find(a) == root]
        children = []
        for member in members:
            kids, start = [], 0
            for width in widths:
                kid = self.new_atom(width)
                for p in self.producers.get(member, []):
                    self.producers.setdefault(kid, []).append(f"{p}[{start}:{start + width}]")
                self.members[kid] = set(self.members.get(root, set()))
                start += width
                kids.append(kid)
            self.parts[member] = kids
            children.append(kids)
        for kids in children[1:]:
            for a, b in zip(children[0], kids):
                self.union(a, b, by)
        for kid in children[0]:
            for reason in self._frozen.get(root, []):
                self.freeze(kid, reason)
            if root in self._blocks:
                self.freeze(kid, f"{self._block_reasons[root]}, but {by} splits its channels")

    def freeze(self, atom, reason):
        for leaf in self.leaves(atom):
            reasons = self._frozen.setdefault(self.find(leaf), [])
            if reason not in reasons:
                reasons.append(reason)

    def freeze_layout(self, layout, reason):
        if layout is not None:
            for s in layout.segments:
                self.freeze(s.atom, reason)

    def touch(self, layout, path):
        if layout is not None:
            for s in layout.segments:
                for leaf in self.leaves(s.atom):
                    self.members[self.find(leaf)].add(path)

    def frozen_reasons(self, atom):
        reasons = [r for leaf in self.leaves(atom) for r in self._frozen.get(self.find(leaf), [])]
        return list(dict.fromkeys(reasons))

    def is_frozen(self, atom):
        return any(self._frozen.get(self.find(leaf)) for leaf in self.leaves(atom))

    def require_blocks(self, atom, blocks, reason):
        """Every channel must be copied the same number of times, copies kept
        inside each of `blocks` equal consecutive blocks (normalisation groups)."""
        if atom in self.parts:
            self.freeze(atom, f"{reason}, but its channels were split to join a concatenation")
            return
        root = self.find(atom)
        old = self._blocks.get(root, 1)
        self._blocks[root] = old * blocks // math.gcd(old, blocks)
        self._block_reasons.setdefault(root, reason)

    def blocks(self, atom):
        root = self.find(atom)
        if root not in self._blocks:
            return None, None
        return self._blocks[root], self._block_reasons[root]

    def roots(self):
        return sorted({self.find(a) for a in range(len(self._parent)) if a not in self.parts})

    def coupling_path(self, a, b):
        """Names of the ops that couple atoms a and b (BFS over union links)."""
        adjacency = {}
        for x, y, by in self.links:
            adjacency.setdefault(x, []).append((y, by))
            adjacency.setdefault(y, []).append((x, by))
        previous = {a: None}
        frontier = [a]
        while frontier:
            nxt = []
            for x in frontier:
                for y, by in adjacency.get(x, []):
                    if y not in previous:
                        previous[y] = (x, by)
                        nxt.append(y)
            frontier = nxt
        path, node = [], b
        while previous.get(node):
            node, by = previous[node]
            path.append(by)
        return list(dict.fromkeys(reversed(path)))
