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
        let huge = HugePages.enabled && bytes >= HugePages.size
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
/// (`madvise(MADV_HUGEPAGE)`; THP's default mode, "madvise", gives them only on request), unless
/// `RESNEXT_HUGEPAGES=0`.
enum HugePages {
    static let size = 2 << 20
    static let enabled = environmentSwitch("RESNEXT_HUGEPAGES")
}

/// The engine's off-switches: each is read from its environment variable at start (on unless
/// set to 0) and can be set while running. `resnext-ddp bench --alternate` flips one between
/// steps, to compare two paths in one process.
public enum EngineSwitch: String, CaseIterable, Sendable {
    case direct3x3 = "direct3x3", pointwise = "pointwise", rowLowering = "row-lowering", bnOnRead = "bn-on-read", pointwiseWide = "pointwise-wide"

    public var environmentVariable: String {
        switch self {
        case .direct3x3: "RESNEXT_DIRECT3X3"
        case .pointwise: "RESNEXT_POINTWISE"
        case .rowLowering: "RESNEXT_ROW_LOWERING"
        case .bnOnRead: "RESNEXT_BN_ON_READ"
        case .pointwiseWide: "RESNEXT_POINTWISE_WIDE"
        }
    }

    /// Whether the path is on now; setting it applies from the next call into the engine.
    public var isOn: Bool {
        get {
            switch self {
            case .direct3x3: Direct3x3.enabled
            case .pointwise: Pointwise.enabled
            case .rowLowering: RowLowering.enabled
            case .bnOnRead: NormalizedInput.enabled
            case .pointwiseWide: Pointwise.wideStrips
            }
        }
        nonmutating set {
            switch self {
            case .direct3x3: Direct3x3.enabled = newValue
            case .pointwise: Pointwise.enabled = newValue
            case .rowLowering: RowLowering.enabled = newValue
            case .bnOnRead: NormalizedInput.enabled = newValue
            case .pointwiseWide: Pointwise.wideStrips = newValue
            }
        }
    }
}

/// A switch that is on unless the environment variable `name` is "0" (the `RESNEXT_*` switches
/// that turn an optimisation off, to compare).
func environmentSwitch(_ name: String) -> Bool {
    guard let v = getenv(name) else { return true }
    return String(cString: v) != "0"
}

/// Peak resident memory of this process in bytes (VmHWM from /proc/self/status), or nil if unknown.
public func peakResidentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        if let kb = line.split(separator: " ").compactMap({ Int($0) }).first { return kb * 1024 }
    }
    return nil
}
