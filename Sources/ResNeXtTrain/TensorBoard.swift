import Foundation
import ResNeXt

/// Writes TensorBoard event files (`events.out.tfevents.*`): TFRecord framing (length, masked
/// CRC-32C of the length, an `Event` protocol buffer, its masked CRC-32C) holding scalar summaries.
/// The protocol buffers are encoded by hand; only the fields TensorBoard reads are written.
public final class TensorBoardWriter {
    public let path: String
    private let handle: FileHandle

    public init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        path = directory + "/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid())"
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw ResNeXtError("\(path): cannot create the TensorBoard event file")
        }
        handle = h
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.string(3, "brain.Event:2")
        write(record: event.bytes)
    }

    /// One event holding several scalars at `step`.
    public func scalars(_ values: [(tag: String, value: Double)], step: Int) {
        var summary = ProtoWriter()
        for (tag, value) in values {
            var v = ProtoWriter()
            v.string(1, tag)
            v.float(2, Float(value))
            summary.message(1, v.bytes)
        }
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.varint(2, UInt64(step))
        event.message(5, summary.bytes)
        write(record: event.bytes)
    }

    public func flush() { try? handle.synchronize() }

    private func write(record: [UInt8]) {
        var out: [UInt8] = []
        var length = UInt64(record.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Array($0) }
        out += lengthBytes
        out += littleEndian(maskedCRC32C(lengthBytes))
        out += record
        out += littleEndian(maskedCRC32C(record))
        handle.write(Data(out))
    }

    private func littleEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}

/// Minimal protocol-buffer encoder.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: UInt64) { rawVarint(UInt64(field) << 3 | wire) }
    mutating func varint(_ field: Int, _ v: UInt64) { key(field, 0); rawVarint(v) }
    mutating func double(_ field: Int, _ v: Double) {
        key(field, 1)
        let b = v.bitPattern
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: b >> (8 * UInt64(i)))) }
    }
    mutating func float(_ field: Int, _ v: Float) {
        key(field, 5)
        let b = v.bitPattern
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: b >> (8 * UInt32(i)))) }
    }
    mutating func message(_ field: Int, _ m: [UInt8]) { key(field, 2); rawVarint(UInt64(m.count)); bytes += m }
    mutating func string(_ field: Int, _ s: String) { message(field, Array(s.utf8)) }
}
