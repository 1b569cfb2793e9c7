import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Float storage allocated once, 64-byte aligned, zero-filled, freed with its owner.
/// Hot loops take `base` into a local pointer; nothing here is resized after creation.
public final class FloatBuffer {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer? = nil
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let status = posix_memalign(&raw, 64, bytes)
        guard status == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
        memset(raw, 0, bytes)
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit { free(base) }

    public func zero() { memset(base, 0, count * MemoryLayout<Float>.stride) }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }

    public func toArray() -> [Float] { Array(buffer) }

    public func copy(from array: [Float]) {
        precondition(array.count <= count, "copy of \(array.count) floats into a buffer of \(count)")
        array.withUnsafeBufferPointer { src in
            base.update(from: src.baseAddress!, count: array.count)
        }
    }
}

/// Peak resident memory of this process in bytes (VmHWM from /proc/self/status), or nil if unknown.
public func peakResidentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        if let kb = line.split(separator: " ").compactMap({ Int($0) }).first { return kb * 1024 }
    }
    return nil
}
