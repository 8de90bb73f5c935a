/** Lowest-free integer allocator, like the kernel's IDA (iommu group and vfio device numbers). */
export class Ida {
  private readonly used = new Set<number>();
  private hint = 0;

  alloc(): number {
    let n = this.hint;
    while (this.used.has(n)) n++;
    this.used.add(n);
    this.hint = n + 1;
    return n;
  }

  free(n: number): void {
    if (this.used.delete(n) && n < this.hint) this.hint = n;
  }
}
