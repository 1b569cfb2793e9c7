import Foundation
import Testing

/// README's "Layout" names every source folder and every Swift file of the library targets, and
/// names nothing that is not there: the map a newcomer reads matches the tree.
@Suite struct LayoutTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The code block under "## Layout".
    static func layoutBlock() throws -> String {
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        guard let section = readme.components(separatedBy: "\n## Layout\n").dropFirst().first else {
            Issue.record("README.md has no \"## Layout\" section")
            return ""
        }
        return section.components(separatedBy: "\n## ").first ?? section
    }

    static func entries(_ path: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(path).path).sorted()
    }

    static func isDirectory(_ path: String) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path, isDirectory: &dir) && dir.boolValue
    }

    @Test func readmeLayoutMatchesTheTree() throws {
        let block = try Self.layoutBlock()
        let words = Set(block.split(whereSeparator: { " ,()/:;\n".contains($0) }).map(String.init))
        var folders: [String] = []
        for target in try Self.entries("Sources") where Self.isDirectory("Sources/" + target) {
            folders.append(target)
            for sub in try Self.entries("Sources/" + target) where Self.isDirectory("Sources/\(target)/\(sub)") && sub != "include" {
                folders.append(sub)
            }
        }
        for folder in folders {
            let named = block.contains(folder + "/")
            #expect(named, "README's Layout does not name the folder \(folder)/")
        }
        // every Swift file of the library targets, by its name
        for target in ["ResNeXt", "ResNeXtTrain", "ResNeXtMPI", "ResNeXtBench"] {
            let enumerator = FileManager.default.enumerator(atPath: Self.root.appendingPathComponent("Sources/" + target).path)
            while let file = enumerator?.nextObject() as? String {
                guard file.hasSuffix(".swift") else { continue }
                let name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
                let named = words.contains(name)
                #expect(named, "README's Layout does not name Sources/\(target)/\(file)")
            }
        }
        // and every folder it names under Sources/ResNeXt exists
        for line in block.split(separator: "\n") {
            let first = line.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
            if first.hasSuffix("/") && !first.contains(",") && line.hasPrefix("        ") && !line.hasPrefix("          ") {
                #expect(Self.isDirectory("Sources/ResNeXt/" + first), "README's Layout names Sources/ResNeXt/\(first), which does not exist")
            }
        }
    }
}
