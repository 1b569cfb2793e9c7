import ArgumentParser
import Foundation
import ResNeXt
import ResNeXtTrain

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download CIFAR-10 (binary version), check its MD5 and unpack the data files.",
        discussion: "Unpacks only cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin and batches.meta.txt into --dest.")

    static let officialURL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    static let officialMD5 = "c32a1d4ab5d03f1284b67883e8d87530"
    static let members = (CIFAR10.trainFiles + [CIFAR10.testFile, "batches.meta.txt"]).map { "cifar-10-batches-bin/" + $0 }

    @Option(help: "Archive URL (https:// or file://).") var url = Download.officialURL
    @Option(help: "Expected MD5 of the archive.") var md5 = Download.officialMD5
    @Option(help: "Folder that receives cifar-10-batches-bin/.") var dest = "data"

    func run() throws {
        do {
            guard let source = URL(string: url), source.scheme != nil else {
                throw ResNeXtError("--url \(url): not a URL (use https://... or file:///path/cifar-10-binary.tar.gz)")
            }
            FileHandleOutput.standardOutput.write("fetching \(url)\n")
            let bytes = try fetch(source)
            let digest = md5Hex([UInt8](bytes))
            guard digest == md5.lowercased() else {
                throw ResNeXtError(
                    "--url \(url): MD5 of the \(bytes.count)-byte archive is \(digest), expected \(md5); the download is damaged or not the official cifar-10-binary.tar.gz, nothing was unpacked"
                )
            }
            try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
            let archive = dest + "/.cifar-10-binary.tar.gz.part"
            try bytes.write(to: URL(fileURLWithPath: archive))
            defer { try? FileManager.default.removeItem(atPath: archive) }
            let tar = Process()
            tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            tar.arguments = ["tar", "-xzf", archive, "-C", dest, "--no-same-owner"] + Download.members
            try tar.run()
            tar.waitUntilExit()
            guard tar.terminationStatus == 0 else {
                throw ResNeXtError("\(url): tar could not unpack \(Download.members.joined(separator: ", ")) (exit \(tar.terminationStatus))")
            }
            let data = try CIFAR10(directory: dest + "/cifar-10-batches-bin")
            print("unpacked \(dest)/cifar-10-batches-bin: \(data.train.count) train and \(data.test.count) test images")
        } catch let error as ResNeXtError {
            FileHandleOutput.standardError.write("error: \(error)\n")
            throw ExitCode(1)
        }
    }

    func fetch(_ source: URL) throws -> Data {
        if source.isFileURL {
            guard let data = FileManager.default.contents(atPath: source.path) else {
                throw ResNeXtError("--url \(url): cannot read \(source.path)")
            }
            return data
        }
        final class Box: @unchecked Sendable { var data: Data?; var error: String? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: source) { data, response, error in
            if let error {
                box.error = "\(error.localizedDescription)"
            } else if let http = response as? HTTPURLResponse, http.statusCode != 200 {
                box.error = "HTTP \(http.statusCode)"
            } else {
                box.data = data
            }
            done.signal()
        }.resume()
        done.wait()
        guard let data = box.data else {
            throw ResNeXtError(
                "--url \(url): download failed (\(box.error ?? "no data")); fetch the archive by other means and pass --url file:///path/cifar-10-binary.tar.gz"
            )
        }
        return data
    }
}
