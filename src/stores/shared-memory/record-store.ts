import type { RecordLayout, RecordOf } from './codecs.ts';
import type { SharedAttachOptions, SharedMapHandle, SharedMapOptions } from './shared-table.ts';
import { SHARED_ATTACH_OPTIONS, SHARED_MAP_OPTIONS, SharedTable } from './shared-table.ts';
import { assertOptionsObject, optionKeys, refuseUnknownOptions } from '../../map/known-options.ts';
import { SharedMemoryStore } from './store-base.ts';

export interface SharedRecordStoreOptions<L extends RecordLayout> extends SharedMapOptions {
  /** Field name -> 'int64' | 'int32' | 'uint32' | 'bool'; 1 to 16 fields. Money fields are int64. */
  readonly layout: L;
}

/** Every key of SharedRecordStoreOptions: the map's options plus `layout`. */
const SHARED_RECORD_OPTIONS: ReadonlySet<string> = new Set([...SHARED_MAP_OPTIONS, ...optionKeys<Omit<SharedRecordStoreOptions<RecordLayout>, keyof SharedMapOptions>>({ layout: true })]);

/**
 * Small fixed-layout records shared by worker threads, e.g. an account's
 * `{ balance: 'int64', limit: 'int64', status: 'int32' }`. A read returns a new plain object
 * whose fields all come from the same write; a write replaces the whole record atomically
 * (copy-on-write), so a reader never sees half of an update, even one whose writer died.
 * `compareAndSwap` compares field by field.
 */
export class SharedRecordStore<L extends RecordLayout> extends SharedMemoryStore<RecordOf<L>> {
  private constructor(table: SharedTable<RecordOf<L>>) {
    super(table);
  }

  static create<L extends RecordLayout>(options: SharedRecordStoreOptions<L>): SharedRecordStore<L> {
    assertOptionsObject(options, 'SharedRecordStore.create', '{ layout, ... }');
    refuseUnknownOptions(options, SHARED_RECORD_OPTIONS, 'SharedRecordStore.create');
    // The table takes the map's options only: `layout` travels as its value layout.
    const { layout, ...mapOptions } = options;
    return new SharedRecordStore<L>(SharedTable.create<RecordOf<L>>({ record: layout }, mapOptions));
  }

  /** Attaches to the map behind `handle`; refuses it unless it holds records of exactly `layout`. */
  static attach<L extends RecordLayout>(handle: SharedMapHandle, layout: L, options?: SharedAttachOptions): SharedRecordStore<L> {
    if (options !== undefined) {
      assertOptionsObject(options, 'SharedRecordStore.attach');
      refuseUnknownOptions(options, SHARED_ATTACH_OPTIONS, 'SharedRecordStore.attach');
    }
    return new SharedRecordStore<L>(SharedTable.attach<RecordOf<L>>(handle, { record: layout }, options));
  }
}
