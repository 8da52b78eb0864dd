/** A Map that forgets its least recently written entries beyond `max`: caches that must stay bounded. */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super()
  }

  /** Sets the entry as the most recent one, forgetting the oldest when full. */
  remember(key: K, value: V): void {
    this.delete(key)
    if (this.size >= this.max) this.delete(this.keys().next().value!)
    this.set(key, value)
  }
}
