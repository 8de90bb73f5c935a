/** Lowest-free integer allocator, like the kernel's IDA (iommu group and vfio device numbers). */
export class Ida {
  private readonly used = new Set<number>();
  /** Numbers held back for a later take() (a recorded host's), which alloc() never returns. */
  private readonly reserved = new Set<number>();
  private hint = 0;

  alloc(): number {
    let n = this.hint;
    while (this.used.has(n)) n++;
    this.used.add(n);
    this.hint = n + 1;
    return n;
  }

  /** Holds n back for take(n); false if it is in use or already held. */
  reserve(n: number): boolean {
    if (this.used.has(n)) return false;
    this.used.add(n);
    this.reserved.add(n);
    return true;
  }

  /** n, if it was held back for this or is free; else nothing is taken and the answer is false. */
  take(n: number): boolean {
    if (this.reserved.delete(n)) return true;
    if (this.used.has(n)) return false;
    this.used.add(n);
    return true;
  }

  /** Every number free again, none held back (as a fresh Ida). */
  clear(): void {
    this.used.clear();
    this.reserved.clear();
    this.hint = 0;
  }

  free(n: number): void {
    this.reserved.delete(n);
    if (this.used.delete(n) && n < this.hint) this.hint = n;
  }
}
