import Foundation
import ResNeXt

/// CIFAR-10 in its official binary layout: records of 3073 bytes, a label byte (0-9) then
/// 1024 red, 1024 green and 1024 blue bytes, each a row-major 32x32 plane.
public struct CIFAR10 {
    public static let recordSize = 3073
    public static let imageBytes = 3072
    public static let mean: [Double] = [0.4914, 0.4822, 0.4465]
    public static let std: [Double] = [0.2470, 0.2435, 0.2616]
    /// (byte / 255 - mean[c]) / std[c], computed in Double and rounded once, for every byte value.
    public static let normalised: [[Float]] = (0..<3).map { c in
        (0..<256).map { Float((Double($0) / 255 - mean[c]) / std[c]) }
    }
    public static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    public static let testFile = "test_batch.bin"

    /// The records of one split, back to back.
    public struct Split {
        public let records: [UInt8]
        public let files: [String]
        public var count: Int { records.count / CIFAR10.recordSize }

        public init(records: [UInt8], files: [String]) {
            self.records = records; self.files = files
        }

        public func label(_ i: Int) -> Int32 { Int32(records[i * CIFAR10.recordSize]) }
    }

    public let directory: String
    public let train: Split
    public let test: Split

    /// The data folder a command uses: `--data-dir`, else `$RESNEXT_DATA`, else ./data/cifar-10-batches-bin.
    public static func defaultDirectory(_ option: String?) -> String {
        if let option { return option }
        if let env = ProcessInfo.processInfo.environment["RESNEXT_DATA"], !env.isEmpty { return env }
        return "data/cifar-10-batches-bin"
    }

    /// Reads every `data_batch_N.bin` present (N = 1...5, in that order) and `test_batch.bin`.
    /// Every file must be a whole number of records with labels 0-9.
    public init(directory: String, needTrain: Bool = true, needTest: Bool = true) throws {
        self.directory = directory
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw ResNeXtError(
                "--data-dir \(directory): no such folder; download CIFAR-10 with `resnext-ddp download --dest \(URL(fileURLWithPath: directory).deletingLastPathComponent().path)` or point --data-dir (or $RESNEXT_DATA) at cifar-10-batches-bin"
            )
        }
        var trainRecords: [UInt8] = [], trainNames: [String] = []
        if needTrain {
            for name in Self.trainFiles {
                let path = directory + "/" + name
                guard FileManager.default.fileExists(atPath: path) else { continue }
                trainRecords += try Self.readRecords(path)
                trainNames.append(name)
            }
            guard !trainNames.isEmpty else {
                throw ResNeXtError("--data-dir \(directory): no training file found (expected data_batch_1.bin ... data_batch_5.bin)")
            }
        }
        train = Split(records: trainRecords, files: trainNames)
        if needTest {
            let path = directory + "/" + Self.testFile
            guard FileManager.default.fileExists(atPath: path) else {
                throw ResNeXtError("--data-dir \(directory): \(Self.testFile) is missing")
            }
            test = Split(records: try Self.readRecords(path), files: [Self.testFile])
        } else {
            test = Split(records: [], files: [])
        }
    }

    /// One file's records, checked: a whole number of 3073-byte records, labels 0-9.
    public static func readRecords(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ResNeXtError("\(path): cannot read the file")
        }
        guard !data.isEmpty, data.count % recordSize == 0 else {
            throw ResNeXtError(
                "\(path): \(data.count) bytes is not a whole number of \(recordSize)-byte CIFAR-10 records (expected a multiple of \(recordSize), 30730000 for a full batch file); the file is truncated or not CIFAR-10 binary"
            )
        }
        let bytes = [UInt8](data)
        for i in 0..<(bytes.count / recordSize) where bytes[i * recordSize] > 9 {
            throw ResNeXtError("\(path): record \(i) (byte \(i * recordSize)) has label \(bytes[i * recordSize]); labels must be 0-9")
        }
        return bytes
    }
}
