import type { SwitchBoard } from '../switches/board.ts';
import type { SwitchView } from '../switches/snapshot.ts';
import { parseBizTag } from './biz-tag.ts';
import type { BizTag } from './biz-tag.ts';

/**
 * What the middleware keeps per distinct X-Biz-Tag header text: the parsed tag, and the switch
 * view targeted at it for the board's current snapshot.
 *
 * Why: a service sees few distinct tags (orgs × transaction types) and many requests each. Parsing
 * the same header, building the same targeting record and the same view on every request was
 * most of what the middleware allocated. A tag is immutable and a view is a pure function of
 * (snapshot, tag), memoizing its evaluations, so sharing both across requests changes nothing a
 * request can observe: each request still pins the snapshot that was current when it arrived.
 *
 * Invariants: only headers that parsed are cached (a malformed one is parsed, and refused, every
 * time: refusals must not fill the cache); at most `capacity` entries, cleared whole when full (a
 * flood of distinct valid tags costs what no cache costs, and no memory); a cached view is used
 * only while its snapshot is the board's current one.
 */
export class BizTagCache {
  readonly #entries = new Map<string, CachedTag>();
  readonly #capacity: number;
  #untagged: SwitchView | null = null;

  constructor(capacity = 1024) {
    this.#capacity = capacity;
  }

  /** The tag of `header`. @throws BizTagError when it is malformed (never cached) */
  tag(header: string): BizTag {
    return this.#entry(header).tag;
  }

  /**
   * The tag of `header` and its switch view for `board`'s current snapshot. The entry returned is
   * the cache's own and is updated when the snapshot changes: read `view` at once (as the
   * middleware does), do not keep the entry. @throws BizTagError
   */
  tagAndView(header: string, board: SwitchBoard): CachedTag {
    const entry = this.#entry(header);
    // Inside a run that already pinned a view, the board merges into that pin: not shareable.
    if (board.pinned) return { tag: entry.tag, view: board.view(entry.tag.targeting) };
    const view = entry.view;
    if (view === null || view.snapshot !== board.snapshot) entry.view = board.view(entry.tag.targeting);
    return entry;
  }

  /** The view of an untagged request for `board`'s current snapshot (shared likewise). */
  untaggedView(board: SwitchBoard): SwitchView {
    if (board.pinned) return board.view(NO_TARGETING);
    let view = this.#untagged;
    if (view === null || view.snapshot !== board.snapshot) this.#untagged = view = board.view(NO_TARGETING);
    return view;
  }

  get size(): number {
    return this.#entries.size;
  }

  #entry(header: string): CachedTag {
    let entry = this.#entries.get(header);
    if (entry === undefined) {
      entry = { tag: parseBizTag(header), view: null };
      if (this.#entries.size >= this.#capacity) this.#entries.clear();
      this.#entries.set(header, entry);
    }
    return entry;
  }
}

const NO_TARGETING: Readonly<Record<string, string>> = Object.freeze({});

export interface CachedTag {
  readonly tag: BizTag;
  view: SwitchView | null;
}
