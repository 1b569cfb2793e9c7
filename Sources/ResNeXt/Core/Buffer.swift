import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Storage of `T` allocated once, 64-byte aligned, zero-filled, freed with its owner.
/// Hot loops take `base` into a local pointer; nothing here is resized after creation.
public final class Buffer<T: EngineScalar> {
    public let count: Int
    public let base: UnsafeMutablePointer<T>

    public init(count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer? = nil
        let bytes = max(count, 1) * MemoryLayout<T>.stride
        let huge = bytes >= HugePages.size
        let status = posix_memalign(&raw, huge ? HugePages.size : 64, bytes)
        guard status == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
        #if os(Linux)
            if huge { _ = madvise(raw, bytes / HugePages.size * HugePages.size, MADV_HUGEPAGE) }
        #endif
        memset(raw, 0, bytes)
        base = raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    deinit { free(base) }

    public func zero() { memset(base, 0, count * MemoryLayout<T>.stride) }

    public var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: base, count: count) }

    public func toArray() -> [T] { Array(buffer) }

    public func copy(from array: [T]) {
        precondition(array.count <= count, "copy of \(array.count) floats into a buffer of \(count)")
        array.withUnsafeBufferPointer { src in
            base.update(from: src.baseAddress!, count: array.count)
        }
    }
}

/// Buffers of 2 MiB and more start on a 2 MiB boundary and ask Linux for transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`; THP's default mode, "madvise", gives them only on request).
enum HugePages {
    static let size = 2 << 20
}
