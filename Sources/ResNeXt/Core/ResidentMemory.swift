import Foundation

/// Peak resident memory of this process in bytes (VmHWM from /proc/self/status), or nil if unknown.
public func peakResidentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        if let kb = line.split(separator: " ").compactMap({ Int($0) }).first { return kb * 1024 }
    }
    return nil
}
