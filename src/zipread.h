/*-------------------------------------------------------------------------
 *
 * zipread.h
 *	  The lines of the one file a zip archive in memory holds (zipread.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_ZIPREAD_H
#define MDFEED_ZIPREAD_H

/* the longest line a reader hands out */
#define MD_ZIP_MAX_LINE 4096

typedef struct MdZipReader MdZipReader;

typedef enum MdZipResult
{
	MD_ZIP_LINE,
	MD_ZIP_END,
	MD_ZIP_ERROR
} MdZipResult;

extern MdZipReader *md_zip_open(const char *data, size_t len, char **err);
extern MdZipResult md_zip_next_line(MdZipReader *z, const char **line, size_t *len, char **err);
extern int64 md_zip_bytes(const MdZipReader *z);
extern void md_zip_close(MdZipReader *z);

#endif
